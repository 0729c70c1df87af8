"""The builder in a hostile output folder, and resumes after the input changed.

Planted symlinks are never written through, foreign entries are never removed (a non-empty
folder is refused), and a rerun rebuilds from the first shard whose inputs changed.
"""

from __future__ import annotations

import json
import os

import pytest

from pipelines import build_shards
from pipelines.verify import verify_shards
from pipelines.writer import write_json

PRECIOUS = b"precious, not the builder's"


@pytest.fixture
def images(tmp_path, helpers):
    root = tmp_path / "imgs"
    helpers.jpeg_folder(root, classes=3, per_class=8, size=24)
    return root


@pytest.fixture
def victim(tmp_path):
    """A file outside the output folder that planted symlinks point at."""
    path = tmp_path / "elsewhere" / "victim.txt"
    path.parent.mkdir()
    path.write_bytes(PRECIOUS)
    return path


# -- 2: never write through a symlink or onto a file the build did not create -------------------


@pytest.mark.parametrize("planted", ["..build.json.tmp", ".index.json.tmp", ".000001.stats.json.tmp",
                                     ".unit000000000000-0000-{pid}.tar.tmp", "index.json", "000002.tar"])
def test_planted_symlinks_are_never_written_through(images, tmp_path, victim, planted):
    out = tmp_path / "out"
    out.mkdir()
    link = out / planted.format(pid=os.getpid())  # the old temporary names were predictable
    link.symlink_to(victim)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=r"not regular files \(symlinks or folders\?\)") as caught:
            build_shards("folder", out, root=images, max_count=5, overwrite=overwrite)
        assert link.name in str(caught.value)
    assert victim.read_bytes() == PRECIOUS and link.is_symlink() and os.readlink(link) == str(victim)
    assert sorted(p.name for p in out.iterdir()) == [link.name]  # nothing written next to it either
    # the final rename refuses a symlink planted at the target name (os.replace would destroy it)
    target = tmp_path / "record.json"
    target.symlink_to(victim)
    with pytest.raises(FileExistsError, match="not a regular file"):
        write_json(target, {"a": 1})
    assert victim.read_bytes() == PRECIOUS and target.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "imgs", "out", "record.json"]  # no temporary left
    # the out_dir itself may be a symlink the user names: followed (only links inside are refused)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert len(build_shards("folder", tmp_path / "link", root=images, max_count=10).index["shards"]) == 3
    assert (tmp_path / "real" / "index.json").is_file()


# -- 3: delete nothing the build did not write ------------------------------------------------


@pytest.mark.parametrize("planted", ["123456.jpg", "000001.png", "000000.txt", "draft.tmp", ".hidden.tmp", "000042.csv",
                                     "000007/", "000003.tar->"])
def test_foreign_entries_are_refused_and_never_removed(images, tmp_path, victim, planted):
    out = tmp_path / "out"
    out.mkdir()
    name = planted.rstrip("/->")
    if planted.endswith("/"):  # a folder with a shard-like name
        (out / name).mkdir()
        (out / name / "inside.txt").write_bytes(PRECIOUS)
    elif planted.endswith("->"):  # a symlink with a shard's name
        (out / name).symlink_to(victim)
    else:
        (out / name).write_bytes(PRECIOUS)
    snapshot = sorted(p.name for p in out.iterdir())
    with pytest.raises(ValueError, match="did not write|not regular files") as caught:
        build_shards("folder", out, root=images, max_count=5)
    assert repr(name) in str(caught.value) and sorted(p.name for p in out.iterdir()) == snapshot
    if planted.endswith("->"):  # a symlink at one of our names blocks even overwrite=True
        with pytest.raises(ValueError, match="not regular files"):
            build_shards("folder", out, root=images, max_count=5, overwrite=True)
        assert (out / name).is_symlink() and victim.read_bytes() == PRECIOUS
        return
    # overwrite=True builds next to foreign entries, and removes only the shard set's own files
    first = build_shards("folder", out, root=images, max_count=5, overwrite=True)
    again = build_shards("folder", out, root=images, max_count=7, overwrite=True)
    assert len(first.index["shards"]) == 5 and len(again.index["shards"]) == 4
    assert not (out / "000004.tar").exists()  # the first build's last shard went
    assert (out / name / "inside.txt" if planted.endswith("/") else out / name).read_bytes() == PRECIOUS
    # an interrupted build of ours with a foreign entry next to it: refused, not cleaned up
    (out / "index.json").unlink()
    with pytest.raises(ValueError, match=f"did not write: {name!r}"):
        build_shards("folder", out, root=images, max_count=7)
    assert (out / name).exists()


# -- 5: resume after the input changed --------------------------------------------------------


def _change(root, helpers, change):
    """Change the input inside shard 1 (positions 5..9 with max_count=5) or after the end."""
    if change == "added":
        helpers.jpeg(root / "class_0" / "img_006b.jpg", seed=99, size=24)
    elif change == "removed":
        (root / "class_0" / "img_007.jpg").unlink()
    elif change == "modified":  # other bytes, same name
        helpers.jpeg(root / "class_0" / "img_006.jpg", seed=98, size=26)
    elif change == "touched":  # same size, new mtime: trusted as a change, as make and rsync do
        os.utime(root / "class_0" / "img_006.jpg", ns=(1, 1))
    elif change == "appended":  # after the last shard, which ended with the input
        helpers.jpeg(root / "class_3" / "img_000.jpg", seed=97, size=24)
    else:  # an (empty) class folder inserted: the labels (cls members) of later classes change, no file does
        (root / "class_05").mkdir()


@pytest.mark.parametrize(("change", "kept", "finished"), [
    *[(change, 1, finished) for change in ("added", "removed", "modified", "touched", "relabelled") for finished in (False, True)],
    ("appended", 4, True),  # the last shard ended with the input: it grows (an interrupted build rebuilt it anyway)
])
def test_resume_rebuilds_from_the_first_shard_whose_inputs_changed(images, tmp_path, helpers, change, kept, finished):
    out = tmp_path / "out"
    build_shards("folder", out, root=images, max_count=5)
    if not finished:  # killed before shards 3 and 4 were complete
        for name in ("index.json", "000003.stats.json", "000004.stats.json"):
            (out / name).unlink()
    _change(images, helpers, change)
    resumed = build_shards("folder", out, root=images, max_count=5)
    clean = build_shards("folder", tmp_path / "clean", root=images, max_count=5)
    assert resumed.resumed_shards == kept
    assert helpers.tree(out) == helpers.tree(tmp_path / "clean")
    assert resumed.index["shards"] == clean.index["shards"] and verify_shards(out).ok
    again = build_shards("folder", out, root=images, max_count=5)  # unchanged now: a no-op
    assert again.resumed_shards == len(clean.index["shards"]) and helpers.tree(out) == helpers.tree(tmp_path / "clean")


def test_resume_of_an_iterable_source_checks_keys(tmp_path, helpers):
    samples = [{"__key__": f"s{i:02d}", "cls": str(i).encode()} for i in range(12)]
    out = tmp_path / "out"
    build_shards(iter(samples), out, max_count=5)
    (out / "index.json").unlink()
    changed = samples[:7] + samples[8:]  # s07 removed: shard 1 (5..9) and later change
    resumed = build_shards(iter(changed), out, max_count=5)
    clean = build_shards(iter(changed), tmp_path / "clean", max_count=5)
    assert resumed.resumed_shards == 1 and helpers.tree(out) == helpers.tree(tmp_path / "clean")


def test_verify_checks_shards_against_the_recorded_inputs(images, tmp_path):
    out = tmp_path / "out"
    build_shards("folder", out, root=images, max_count=5)
    stats_file = out / "000001.stats.json"
    stats = json.loads(stats_file.read_text())
    assert stats["inputs"] == [f"class_0/img_{i:03d}" for i in range(5, 8)] + ["class_1/img_000", "class_1/img_001"]
    stats["inputs"][2] = "class_0/img_999"  # the tar holds an input the record does not list
    stats_file.write_text(json.dumps(stats))
    report = verify_shards(out)
    assert not report.ok and any("000001.tar: sample 'class_0/img_007' is not the recorded input" in p for p in report.problems)
