"""``python -m generators`` lists the entry points of the package."""

USAGE = """generators: GANs that modify query photos

  python -m generators.train       --model {stargan,pix2pix,cyclegan} --catalog DIR --out RUN_DIR [...]
  python -m generators.checkpoint  info CKPT | export CKPT OUT.pt [--fp16]
  python -m generators.pairs       --catalog DIR --method {kmeans,pose} --out pairs.jsonl
  python -m generators.evaluate    --run RUN_DIR --catalog DIR

See docs/generators.md."""

if __name__ == "__main__":
    print(USAGE)
