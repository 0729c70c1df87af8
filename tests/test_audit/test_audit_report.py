"""End to end: planted duplicates across splits are found, a clean set gives none, the report is
self-contained and escapes hostile strings, corrupt samples follow the error policy."""

from __future__ import annotations

import html.parser
import json
from pathlib import Path
from urllib.parse import urlparse

import pytest

import loaders
from datafactory.audit import audit
from pipelines import build_shards


def _folder(path: Path, **options):
    return loaders.open_dataset("folder", path, **options)


def _near_pairs(report) -> set[tuple[str, str]]:
    across = report.data["near_duplicates"]["phash"]["across"]
    assert not across["truncated"]
    return {(pair["query"], pair["match"]) for pair in across["listed"]}


def test_planted_duplicates_are_found_across_splits_and_nothing_else(planted, tmp_path):
    expected = planted["expected"]
    shards = tmp_path / "train-shards"
    build_shards("folder", shards, root=planted["train"], max_count=40, progress=False)
    report = audit(shards, _folder(planted["test"]), tmp_path / "out", progress=False, near_within=True)
    data = report.data

    # near duplicates (pHash <= 10): exactly the planted pairs, the two exact copies included
    assert _near_pairs(report) == set(expected.items())
    for pair in data["near_duplicates"]["phash"]["across"]["listed"]:
        assert pair["exact_pixels"] == (pair["query"] in ("alpha/copy_bytes", "beta/copy_pixels"))
        assert pair["distance"] <= 10
    # no near duplicate within either clean split
    assert all(summary["pairs"] == 0 for summary in data["near_duplicates"]["phash"]["within"].values())

    # exact duplicates: the byte copy by bytes, both copies by pixels
    exact_bytes, exact_pixels = data["exact_duplicates"]["bytes"], data["exact_duplicates"]["pixels"]
    assert exact_bytes["test_in_train"] == 1 and exact_pixels["test_in_train"] == 2
    pixel_groups = {tuple(sorted((m["split"], m["key"]) for m in g["members"])) for g in exact_pixels["listed"]}
    assert pixel_groups == {(("test", "alpha/copy_bytes"), ("train", expected["alpha/copy_bytes"])),
                            (("test", "beta/copy_pixels"), ("train", expected["beta/copy_pixels"]))}
    assert exact_bytes["duplicates_within"] == {"train": 0, "test": 0}

    # the train split came from shards: per-shard summary, counts add up
    train = data["splits"]["train"]
    assert train["source"]["kind"] == "shards" and train["listed"] == train["read"] == 90 and train["counts_add_up"]
    assert [s["listed"] for s in data["shards"]["train"]] == [40, 40, 10]
    assert data["shards"]["test"] is None
    # labels: the folder classes, from the adapter (test) and from the shard set's source (train: folder
    # instances name their classes, the class does not, so the shard set's labels are indices)
    test_labels = data["labels"]["test"]["single"]
    assert [c["name"] for c in test_labels["classes"]] == ["alpha", "beta", "gamma"]
    assert sum(c["count"] for c in test_labels["classes"]) == data["splits"]["test"]["read"] == 24 + len(expected)
    assert data["images"]["test"]["bit_depths"] == {"8": 38} and data["images"]["test"]["channels"] == {"3": 38}
    sizes = {(s["width"], s["height"]) for s in data["images"]["test"]["top_sizes"]}
    assert sizes == {(96, 96), (94, 94), (72, 72)}


def test_a_clean_set_has_no_near_duplicates_at_the_default_threshold(tmp_path, pictures):
    pictures.make_folder(tmp_path / "a", list(range(150)))
    pictures.make_folder(tmp_path / "b", list(range(5000, 5050)))
    report = audit(_folder(tmp_path / "a"), _folder(tmp_path / "b"), progress=False, near_within=True)
    phash = report.data["near_duplicates"]["phash"]
    assert phash["across"]["pairs"] == 0
    assert phash["within"]["train"]["pairs"] == phash["within"]["test"]["pairs"] == 0
    assert report.data["exact_duplicates"]["pixels"]["groups"] == 0
    assert report.out is None and report.files == []


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "action", "data", "poster", "srcset"):
                self.links.append(value or "")


def test_report_is_self_contained_and_escapes_hostile_names(planted, tmp_path):
    hostile = '$\\frac{$<img src=javascript:x onerror="alert(1)">&<script>'  # a folder name: no slash; math for matplotlib
    (planted["train"] / "alpha").rename(planted["train"] / hostile)
    (planted["test"] / "alpha").rename(planted["test"] / hostile)
    out = tmp_path / "report"
    report = audit(_folder(planted["train"]), _folder(planted["test"]), out, progress=False)
    page = (out / "report.html").read_text(encoding="utf-8")

    parser = _Links()
    parser.feed(page)
    assert "script" not in parser.tags and "img" in parser.tags  # the hostile class name is text, not a tag
    assert "$\\frac{$&lt;img src=javascript:x onerror=&quot;alert(1)&quot;&gt;&amp;&lt;script&gt;" in page
    assert parser.links, "the report shows its figures"
    written = {p.name for p in out.iterdir()}
    for link in parser.links:
        if link.startswith("data:"):
            assert link.startswith("data:image/png;base64,")
            continue
        parsed = urlparse(link)
        assert not parsed.scheme and not parsed.netloc and not link.startswith("/"), link
        assert (out / link).resolve().parent == out.resolve() and link in written, link
    for forbidden in ("http:", "https:", "file:", str(tmp_path)):
        assert forbidden not in page
    # the figures are written next to the page and listed in report.json
    data = json.loads((out / "report.json").read_text())
    assert set(data["figures"]) >= {"class_histogram", "image_sizes", "thumbnails_train", "thumbnails_test", "duplicate_pairs"}
    assert written == {"report.json", "report.html", *data["figures"].values()}
    assert {p.name for p in report.files} == written
    assert data["labels"]["train"]["single"]["classes"][0]["name"] == hostile  # kept verbatim in JSON
    assert data["near_duplicates"]["phash"]["across"]["pairs"] == len(planted["expected"])


def test_report_folder_is_written_without_following_links(planted, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (out / "report.html").symlink_to(victim)
    with pytest.raises(FileExistsError):
        audit(_folder(planted["test"]), None, out, progress=False)
    assert victim.read_text() == "keep me" and (out / "report.html").is_symlink()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_samples_are_recorded_with_reasons_and_counts_add_up(planted, tmp_path, pictures):
    broken = pictures.write(planted["test"] / "beta" / "broken.png", pictures.encode(pictures.photo(7))[:200])
    report = audit(_folder(planted["train"]), _folder(planted["test"]), progress=False)
    split = report.data["splits"]["test"]
    assert split["corrupt"] == 1 and split["counts_add_up"] and split["listed"] == split["read"] + 1
    (corrupt,) = report.data["corrupt"]["test"]["listed"]
    assert corrupt["key"] == "beta/broken" and str(broken) in corrupt["reason"]
    with pytest.raises(loaders.SampleError, match="broken.png"):
        audit(_folder(planted["train"]), _folder(planted["test"]), progress=False, on_error="raise")


def test_a_broken_shard_loses_its_tail_and_the_counts_still_add_up(planted, tmp_path):
    shards = tmp_path / "shards"
    build_shards("folder", shards, root=planted["train"], max_count=30, progress=False)
    tar = shards / "000001.tar"
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2])  # cut mid-shard
    report = audit(shards, None, progress=False)
    split = report.data["splits"]["train"]
    tallies = report.data["shards"]["train"]
    assert split["unreadable"] == tallies[1]["unreadable"] > 0 and tallies[1]["error"]
    assert split["counts_add_up"] and split["listed"] == 90
    assert tallies[0]["read"] == tallies[2]["read"] == 30


def test_multilabel_statistics_for_xray_style_labels(tmp_path, pictures):
    import numpy as np
    import torch

    rows = [[1, 0, np.nan], [1, 1, np.nan], [0, np.nan, np.nan], [np.nan, np.nan, np.nan], [1, 1, 0]]
    samples = [{"__key__": f"s{i}", "image": torch.from_numpy(pictures.photo(i, 32)).permute(2, 0, 1).contiguous(),
                "labels": torch.tensor(row, dtype=torch.float32)} for i, row in enumerate(rows)]
    build_shards(samples, tmp_path / "xr", max_count=10, progress=False)
    report = audit(tmp_path / "xr", None, tmp_path / "out", progress=False)
    multi = report.data["labels"]["train"]["multi"]
    assert [c["positive"] for c in multi["columns"]] == [3, 2, 0]
    assert [c["unlabelled"] for c in multi["columns"]] == [1, 2, 4]
    assert multi["samples_without_any_label"] == 1 and multi["unlabelled_share"] == pytest.approx(7 / 15)
    assert multi["cooccurrence"] == [[3, 2, 0], [2, 2, 0], [0, 0, 0]]
    assert report.data["labels"]["train"]["single"] is None
    assert "cooccurrence_train" in report.figures


def test_bad_arguments_are_named(planted):
    ds = _folder(planted["test"])
    with pytest.raises(TypeError, match="unknown audit setting"):
        audit(ds, threshold_bits=3)
    with pytest.raises(ValueError, match="threshold"):
        audit(ds, threshold=64)
    with pytest.raises(ValueError, match="names"):
        audit(ds, names=("../x", "test"))
    with pytest.raises(TypeError, match="shard folder path"):
        audit(42)
    with pytest.raises(FileNotFoundError, match="index.json"):
        audit(planted["test"])
