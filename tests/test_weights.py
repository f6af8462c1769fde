"""Checkpoint loading, bad checkpoints, and the download path (against 127.0.0.1 only)."""
from __future__ import annotations

import http.server
import random
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import msvit
from msvit.errors import (
    CheckpointError,
    CorruptCheckpointError,
    KeyMismatchError,
    NotAStateDictError,
    VariantMismatchError,
    WeightsDownloadError,
)
from msvit.model.weights import download_weights, sha256_file


@pytest.fixture(scope="module")
def b0_state():
    torch.manual_seed(0)
    return msvit.ms_eff_vit_b0().state_dict()


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_demo_bin_loads_strict_bit_for_bit(demo_weights):
    m = msvit.ms_eff_vit_b0(weights=demo_weights)
    sd = torch.load(demo_weights, weights_only=True)
    assert _same(sd, m.state_dict())
    assert m.weights_sha256 == "395ab94fcd4e125123747938901a6a00a43a561dd4e47c0ec62eb7d5d78dd932"


def test_safetensors_and_wrapped_checkpoints(tmp_path, b0_state):
    st = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in b0_state.items()}, st)
    assert _same(b0_state, msvit.ms_eff_vit_b0(weights=st).state_dict())
    wrapped = tmp_path / "w.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in b0_state.items()}, "epoch": 3}, wrapped)
    assert _same(b0_state, msvit.ms_eff_vit_b0(weights=wrapped).state_dict())


def test_wrong_variant(tmp_path):
    p = tmp_path / "b5.bin"
    torch.save(msvit.ms_eff_vit_b5().state_dict(), p)
    with pytest.raises(VariantMismatchError, match="ms_eff_vit_b5 weights but the model is ms_eff_vit_b0"):
        msvit.ms_eff_vit_b0(weights=p)


def test_missing_and_extra_keys(tmp_path, b0_state):
    sd = dict(b0_state)
    sd.pop("head.4.bias")
    sd["head.9.weight"] = torch.zeros(1)
    p = tmp_path / "keys.bin"
    torch.save(sd, p)
    with pytest.raises(KeyMismatchError, match=r"1 missing \(e.g. head.4.bias\); 1 unexpected \(e.g. head.9.weight\)"):
        msvit.ms_eff_vit_b0(weights=p)


def test_wrong_shape(tmp_path, b0_state):
    sd = dict(b0_state)
    sd["head.4.weight"] = torch.zeros(2, 140)
    p = tmp_path / "shape.bin"
    torch.save(sd, p)
    with pytest.raises(KeyMismatchError, match="head.4.weight is \\(2, 140\\)"):
        msvit.ms_eff_vit_b0(weights=p)


def test_foreign_state_dict(tmp_path):
    p = tmp_path / "resnet.bin"
    torch.save(torch.nn.Linear(3, 4).state_dict(), p)
    with pytest.raises(KeyMismatchError, match="not an MS-Eff-ViT state dict"):
        msvit.ms_eff_vit_b0(weights=p)


def test_not_a_state_dict(tmp_path):
    lst = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], lst)
    with pytest.raises(NotAStateDictError, match="expected a state dict"):
        msvit.ms_eff_vit_b0(weights=lst)
    module = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), module)  # a pickled module: refused by weights_only
    with pytest.raises(NotAStateDictError, match="pickled Python objects"):
        msvit.ms_eff_vit_b0(weights=module)


def test_corrupt_and_missing_files(tmp_path, demo_weights):
    trunc = tmp_path / "trunc.bin"
    trunc.write_bytes(Path(demo_weights).read_bytes()[:100_000])
    with pytest.raises(CorruptCheckpointError, match="truncated or corrupt"):
        msvit.ms_eff_vit_b0(weights=trunc)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00not safetensors at all")
    with pytest.raises(CorruptCheckpointError, match="safetensors"):
        msvit.ms_eff_vit_b0(weights=garbage)
    with pytest.raises(CheckpointError, match="not found"):
        msvit.ms_eff_vit_b0(weights=tmp_path / "nope.bin")


# --- the format is sniffed from the content, not the name ------------------------------

def test_empty_file_is_reported_as_empty(tmp_path):
    p = tmp_path / "empty.bin"
    p.write_bytes(b"")
    with pytest.raises(CorruptCheckpointError, match="empty"):
        msvit.ms_eff_vit_b0(weights=p)


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    p = tmp_path / "random.bin"
    p.write_bytes(b"\x13\x37" + random.Random(0).randbytes(4094))
    with pytest.raises(CorruptCheckpointError, match=r"not a checkpoint \(unrecognised content\)"):
        msvit.ms_eff_vit_b0(weights=p)


def test_safetensors_content_named_bin_loads(tmp_path, b0_state):
    p = tmp_path / "w.bin"
    save_file({k: v.contiguous() for k, v in b0_state.items()}, p)
    assert _same(b0_state, msvit.ms_eff_vit_b0(weights=p).state_dict())


def test_folder_given_as_weights(tmp_path):
    d = tmp_path / "weights.bin"
    d.mkdir()
    with pytest.raises(CheckpointError, match="is a folder; expected a checkpoint file"):
        msvit.ms_eff_vit_b0(weights=d)


def test_truncated_legacy_pickle_is_corrupt(tmp_path, b0_state):
    legacy = tmp_path / "legacy.pt"
    torch.save(b0_state, legacy, _use_new_zipfile_serialization=False)  # pre-1.6 format
    assert _same(b0_state, msvit.ms_eff_vit_b0(weights=legacy).state_dict())
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(legacy.read_bytes()[:50_000])
    with pytest.raises(CorruptCheckpointError, match="truncated or corrupt"):
        msvit.ms_eff_vit_b0(weights=trunc)


def test_sniff_by_magic_bytes(tmp_path, demo_weights):
    from msvit.model.weights import sniff_checkpoint

    cases = {"zip": b"PK\x03\x04rest", "pickle": b"\x80\x02rest", "empty": b"",
             "safetensors": (2).to_bytes(8, "little") + b"{}", "unknown": b"{not a header}"}
    for kind, data in cases.items():
        f = tmp_path / kind
        f.write_bytes(data)
        assert sniff_checkpoint(f) == kind
    assert sniff_checkpoint(demo_weights) == "zip"


# --- download path: a real HTTP server on 127.0.0.1, never the internet -------------

class _Server:
    def __init__(self, root: Path, lie_length: bool = False):
        hits = self.hits = []

        class H(http.server.SimpleHTTPRequestHandler):
            def __init__(s, *a, **k):
                super().__init__(*a, directory=str(root), **k)

            def log_message(s, *a):
                pass

            def send_header(s, key, value):
                if lie_length and key == "Content-Length":
                    value = str(int(value) + 1000)
                super().send_header(key, value)

            def do_GET(s):
                hits.append(s.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def release_dir(tmp_path, demo_weights):
    d = tmp_path / "release"
    d.mkdir()
    (d / "ms_eff_vit_b0_celeb_df_v2.bin").write_bytes(Path(demo_weights).read_bytes())
    return d


def test_pretrained_downloads_once_into_cache(tmp_path, release_dir, monkeypatch, demo_weights):
    srv = _Server(release_dir)
    try:
        monkeypatch.setenv("MSVIT_RELEASE_BASE", srv.base)
        monkeypatch.setenv("MSVIT_CACHE_DIR", str(tmp_path / "cache"))
        m = msvit.ms_eff_vit_b0(pretrained=True, dataset="celeb_df_v2")
        cached = tmp_path / "cache" / "ms_eff_vit_b0_celeb_df_v2.bin"
        assert cached.is_file() and sha256_file(cached) == sha256_file(demo_weights)
        assert (cached.parent / (cached.name + ".sha256")).read_text().strip() == sha256_file(demo_weights)
        assert m.weights_path == str(cached)
        msvit.ms_eff_vit_b0(pretrained=True)
        assert srv.hits == ["/ms_eff_vit_b0_celeb_df_v2.bin"]  # second build: cache, no request
        # a corrupted cache entry is detected by its recorded hash and fetched again
        cached.write_bytes(b"x" * 10)
        msvit.ms_eff_vit_b0(pretrained=True)
        assert len(srv.hits) == 2 and sha256_file(cached) == sha256_file(demo_weights)
        assert not list(cached.parent.glob("*.part"))
    finally:
        srv.close()


def test_download_integrity_failures(tmp_path, release_dir):
    srv = _Server(release_dir, lie_length=True)
    url = f"{srv.base}/ms_eff_vit_b0_celeb_df_v2.bin"
    try:
        with pytest.raises(WeightsDownloadError, match="truncated"):
            download_weights(url, tmp_path / "c1", progress=False)
        assert not list((tmp_path / "c1").iterdir())  # nothing half-written left behind
    finally:
        srv.close()
    srv = _Server(release_dir)
    try:
        with pytest.raises(WeightsDownloadError, match="does not match the published"):
            download_weights(f"{srv.base}/ms_eff_vit_b0_celeb_df_v2.bin", tmp_path / "c2", expected_sha256="0" * 64,
                             progress=False)
        (release_dir / "junk.bin").write_bytes(b"not a checkpoint")
        with pytest.raises(WeightsDownloadError, match="not a usable checkpoint"):
            download_weights(f"{srv.base}/junk.bin", tmp_path / "c3", progress=False)
    finally:
        srv.close()


def test_offline_error_says_how_to_use_a_local_file(tmp_path, monkeypatch):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused, like being offline
    monkeypatch.setenv("MSVIT_RELEASE_BASE", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MSVIT_CACHE_DIR", str(tmp_path))
    with pytest.raises(WeightsDownloadError, match="--weights PATH"):
        msvit.ms_eff_vit_b0(pretrained=True, dataset="ff++")


def test_pretrained_and_weights_are_exclusive(demo_weights):
    with pytest.raises(ValueError, match="not both"):
        msvit.ms_eff_vit_b0(pretrained=True, weights=demo_weights)
    with pytest.raises(ValueError, match="dataset"):
        msvit.ms_eff_vit_b0(pretrained=True, dataset="imagenet")
