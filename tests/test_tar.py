"""shards/tar.py: the tar parser on other writers' archives and streamed URLs."""
from __future__ import annotations

import tarfile


def test_pax_headers_and_streamed_urls_read_the_same(written, tmp_path):
    """Shards re-packed by other tools (pax headers) take the tarfile path; pipe: URLs stream."""
    _, _, sdir, index = written
    split = max(index["splits"], key=lambda s: index["splits"][s]["samples"])
    first = sdir / index["splits"][split]["shards"][0]["file"]
    pax = tmp_path / "pax.tar"
    with tarfile.open(first) as src, tarfile.open(pax, "w", format=tarfile.PAX_FORMAT,
                                                  pax_headers={"comment": "re-packed"}) as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m))
    from shards.stream import tar_samples
    n = index["splits"][split]["shards"][0]["samples"]

    def read(url):
        out = list(tar_samples([{"url": url}], {url: n}))
        return [(s["__key__"], bytes(s["super.npy"]), bytes(s["meta.json"])) for s in out]

    ref = read(str(first))
    assert len(ref) == n
    assert read(str(pax)) == ref
    assert read(f"pipe:cat {first}") == ref
