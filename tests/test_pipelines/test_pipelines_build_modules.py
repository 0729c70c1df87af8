"""The build's module boundaries and its config dataclasses: manifest vs writer, unit vs engines."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

import pipelines
from pipelines import build_shards
from pipelines.build_config import BuildConfig, EngineConfig
from pipelines.sources import Reencode

PIPELINES = Path(pipelines.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_reading_side_and_the_unit_of_work_import_no_writer_or_driver():
    # readers share pipelines.manifest with the writer; the worker side never imports the driver
    for reader in ("manifest.py", "loader.py", "verify.py", "hf.py"):
        assert not _imported_modules(PIPELINES / reader) & {"pipelines.writer", "pipelines.build"}, reader
    assert "pipelines.loader" not in _imported_modules(PIPELINES / "manifest.py")
    assert not _imported_modules(PIPELINES / "unit.py") & {"pipelines.build", "pipelines.engines"}
    assert not _imported_modules(PIPELINES / "engines.py") & {"pipelines.build"}
    assert not (PIPELINES / "demo.py").exists()  # the demo flow lives in datafactory.demo


def test_moved_names_stay_importable_from_their_old_modules():
    import pipelines.build as build
    import pipelines.engines as engines
    import pipelines.manifest as manifest
    import pipelines.unit as unit
    import pipelines.writer as writer

    for name in ("INDEX_FORMAT", "read_json", "write_json", "schema_of", "shard_name", "input_problems", "new_run_id"):
        assert getattr(writer, name) is getattr(manifest, name), name
    assert build.build_unit is unit.build_unit and build.ENGINES is engines.ENGINES
    assert pipelines.RAY_INSTALL_HINT == engines.RAY_INSTALL_HINT
    from datafactory.demo import demo_roundtrip

    assert callable(demo_roundtrip) and not hasattr(pipelines, "demo_roundtrip")


def test_build_config_is_what_index_json_records_and_round_trips(jpeg_folder, tmp_path):
    root, _ = jpeg_folder
    report = build_shards("folder", tmp_path / "out", root=root, max_count=5, max_bytes=1 << 20, on_error="skip",
                          reencode={"image": "png", "max_side": 16}, suffixes={"image": "jpg"}, workers=2)
    stored = json.loads((tmp_path / "out" / "index.json").read_text())
    expected = BuildConfig(5, 1 << 20, Reencode("png", max_side=16), "skip", "structure", {"image": "jpg"})
    assert stored["config"] == expected.record() == report.index["config"]
    assert BuildConfig.from_record(stored["config"]) == expected
    assert stored["run"] == EngineConfig("local", 2).record()
    assert expected.job == ("structure", Reencode("png", max_side=16), {"image": "jpg"})
    assert dataclasses.replace(expected, max_count=7).suffixes == (("image", "jpg"),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        expected.max_count = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: BuildConfig(max_count=True), ValueError, "max_count must be a positive int, got True"),
        (lambda: BuildConfig(max_bytes=0), ValueError, "max_bytes must be a positive int"),
        (lambda: BuildConfig(on_error="warn"), ValueError, "on_error must be one of"),
        (lambda: BuildConfig(check="deep"), ValueError, "check must be one of"),
        (lambda: BuildConfig(reencode="gif"), ValueError, "reencode image must be one of"),
        (lambda: BuildConfig(suffixes=["image", "jpg"]), TypeError, "suffixes must be a dict"),
        (lambda: BuildConfig(suffixes={"image": 3}), TypeError, "bad entry for 'image'"),
        (lambda: BuildConfig.from_record({"max_count": 4}), ValueError, "missing key"),
        (lambda: BuildConfig.from_record({**BuildConfig().record(), "shards": 1}), ValueError, r"unknown key\(s\) \['shards'\]"),
        (lambda: EngineConfig(workers=0), ValueError, "workers must be a positive int"),
        (lambda: EngineConfig(engine="spark"), ValueError, "engine must be one of"),
        (lambda: EngineConfig(engine="ray", ray_address=6379), TypeError, "ray_address must be a str"),
    ],
)
def test_bad_settings_name_the_argument(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_bad_suffixes_are_refused_before_the_output_folder_is_touched(jpeg_folder, tmp_path):
    root, _ = jpeg_folder
    with pytest.raises(TypeError, match="suffixes must be a dict"):
        build_shards("folder", tmp_path / "out", root=root, suffixes="jpg")
    assert not (tmp_path / "out").exists()
