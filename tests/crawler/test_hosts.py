"""Picture hosts: the shop's own and its CDNs by default, an allow-list for more, nothing else."""

from __future__ import annotations

import pytest

from crawler.hosts import HostNotAllowed, HostPolicy, default_policy
from crawler.sites import get_adapter


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://www.shop.example/img/a.jpg", True),
        ("https://shop.example/img/a.jpg", True),  # the bare domain of a www. shop
        ("https://cdn.shop.example/a.jpg", True),  # and its subdomains
        ("https://www.shop.example:8443/a.jpg", False),  # another port is another service
        ("http://127.0.0.1:6379/", False),
        ("http://169.254.169.254/latest/meta-data/", False),
        ("https://shop.example.evil.example/a.jpg", False),
        ("https://evilshop.example/a.jpg", False),
        ("https://www.shop.example@evil.example/a.jpg", False),  # user info is not the host
        ("file:///etc/passwd", False),
        ("ftp://www.shop.example/a.jpg", False),
        ("https://img.partner-cdn.example/x.jpg", True),  # --image-hosts
        ("https://partner-cdn.example/x.jpg", False),  # *.domain means subdomains only
    ],
)
def test_default_policy_of_a_www_shop(url, allowed):
    policy = default_policy("https://www.shop.example/damen/", (), ["*.partner-cdn.example"])
    assert policy.allows(url) is allowed


def test_refusal_names_the_host_and_the_allowed_ones():
    policy = default_policy("http://127.0.0.1:8765", ())
    policy.check("http://127.0.0.1:8765/bilder/produkt/x.png")
    with pytest.raises(HostNotAllowed, match=r"picture host 127\.0\.0\.1:9000 is not allowed \(allowed: 127\.0\.0\.1:8765;"):
        policy.check("http://127.0.0.1:9000/x.png")
    with pytest.raises(HostNotAllowed, match="only http and https"):
        policy.check("data:image/png;base64,AAAA")


def test_adapters_name_their_cdns():
    assert get_adapter("zalando").image_hosts and default_policy(
        "https://www.zalando.de", get_adapter("zalando").image_hosts).allows("https://img01.ztat.net/article/x.jpg")
    assert default_policy("https://www.aboutyou.de", get_adapter("aboutyou").image_hosts).allows(
        "https://cdn.aboutstatic.com/file/x.png")
    assert not HostPolicy(("cdn.aboutstatic.com",)).allows("https://cdn.aboutstatic.com.evil.example/x.png")
