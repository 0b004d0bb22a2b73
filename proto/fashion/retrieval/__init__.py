"""Generated gRPC code (python -m proto.build)."""
