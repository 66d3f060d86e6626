"""libFuzzer on libdzip (fuzz/fuzz_dzip.c, under AddressSanitizer and UBSan) for a bounded minute,
seeded with the committed fixtures and small files written now: no crash, no sanitizer report,
no input slower than the timeout. `make -C libdzip fuzz` runs the same target for 30 minutes."""
import json
import re
import shutil
import subprocess
import warnings

import corpus
import dzc
import pytest
import torch
from dzip_tools import join, split
from torch import nn

SECONDS = 60


class Small(nn.Module):
    """A 2-layer MLP of a few hundred weights: seeds of 1-2 kB run thousands of times a second."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(24, 16), nn.Linear(16, 5)
        self.register_buffer("steps", torch.tensor([3, 1, 4], dtype=torch.int64))


def _seeds(directory):
    torch.manual_seed(0)
    directory.mkdir(parents=True, exist_ok=True)
    for p in corpus.FIXTURES.glob("*.dzip"):
        shutil.copy(p, directory / p.name)
    import deepzip as dz

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = Small()
        dz.prune_units_(m, {"fc1": 0.25})
        dz.prune_(m, sparsity={"fc1": 0.7, "fc2": 0.5})
        dz.share_weights_(m, bits={"fc1": 3, "fc2": 2})
        for coder in corpus.CODERS:
            dz.save(m, directory / f"small-{coder}.dzip", coder=coder)
        m = Small()
        dz.prune_(m, sparsity=0.6)
        dz.round_(m, names=("bias",))
        dz.save(m, directory / "small-sparse.dzip", coder="huffman")
        corpus.to_version(directory / "small-ans.dzip", directory / "small-v1.dzip", 1, reverse=True)
        from deepzip.quantize import quantize_pretrained_

        m = Small()  # version 5: a scale per row (post-training levels)
        quantize_pretrained_(m, None, 0.4)
        for coder in ("ans", "context"):
            dz.save(m, directory / f"small-scaled-{coder}.dzip", coder=coder)
        dz.save(Small(), directory / "small-files.dzip", coder="ans",  # version 6: carried files
                files={"tokenizer.json": b'{"vocab": {"a": 0, "b": 1}}' * 4, "1_Pooling/config.json": b"{}"})
    from test_robustness import _hand_made

    for k, (_, text, payload) in enumerate(_hand_made()):  # headers at the edges, as plain JSON
        (directory / f"hand-{k}.dzip").write_bytes(join({}, payload, version=3, flags=0, header_bytes=text))
    for p in sorted(directory.glob("small-*.dzip")):  # the same with the header as plain JSON (flags 0)
        blob = p.read_bytes()
        header, payload = split(blob)
        if blob[4] >= 3:
            for s in header["streams"]:
                del s["offset"]
        p.with_suffix(".json.dzip").write_bytes(join({}, payload, version=blob[4], flags=0,
                                                      header_bytes=json.dumps(header).encode()))
    return sorted(directory.iterdir())


@pytest.fixture(scope="module")
def fuzzer(libdzip):
    proc = subprocess.run(["make", "-C", str(dzc.LIBDZIP), "fuzz-build"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return dzc.BUILD / "fuzz_dzip"


def test_a_minute_of_fuzzing_finds_nothing(fuzzer, tmp_path):
    seeds = _seeds(tmp_path / "corpus")
    # leave the seeds where `make -C libdzip fuzz` looks for a corpus
    (dzc.BUILD / "corpus").mkdir(exist_ok=True)
    for p in seeds:
        shutil.copy(p, dzc.BUILD / "corpus" / p.name)
    proc = subprocess.run([str(fuzzer), f"-max_total_time={SECONDS}", "-timeout=5", "-rss_limit_mb=2048",
                           "-print_final_stats=1", f"-dict={dzc.LIBDZIP / 'fuzz' / 'dzip.dict'}",
                           f"-artifact_prefix={tmp_path}/", str(tmp_path / "corpus")],
                          capture_output=True, text=True, timeout=SECONDS + 120)
    log = proc.stdout + proc.stderr
    runs = int(re.search(r"stat::number_of_executed_units:\s+(\d+)", log).group(1))
    print(f"libFuzzer: {runs} executions in {SECONDS} s, {len(seeds)} seeds")
    assert proc.returncode == 0, log[-4000:]
    assert not re.search(r"ERROR: |runtime error|SUMMARY: ", log), log[-4000:]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-"))]
    assert runs > 10 * SECONDS, f"only {runs} executions: the target is too slow to fuzz"
