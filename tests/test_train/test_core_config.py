"""Trainer configs: strict JSON + key=value overrides, typed parsing, saved and listed with defaults."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from pipelines.train.config import TrainConfig, config_help, config_to_dict, load_config, parse_override, save_config


@dataclass
class ToyConfig(TrainConfig):
    widths: tuple[int, ...] = (8, 16)
    name: str = "toy"
    flag: bool = False
    HELP = {"widths": "channel widths"}


def test_defaults_file_then_overrides_in_order(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"lr": 0.5, "epochs": 3, "widths": [1, 2, 3]}))
    cfg = load_config(ToyConfig, path, ["epochs=7", "flag=true", "widths=[4]", "name=a=b"])
    assert (cfg.lr, cfg.epochs, cfg.flag, cfg.widths, cfg.name) == (0.5, 7, True, (4,), "a=b")
    assert cfg.batch_size == 32 and cfg.optimizer == "adamw"


def test_unknown_keys_raise_naming_the_key_and_listing_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"'lrr'.*valid keys: .*\blr\b"):
        load_config(ToyConfig, overrides=["lrr=0.1"])
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"epochs": 2, "nope": 1}))
    with pytest.raises(ValueError, match=r"cfg\.json.*'nope'.*valid keys"):
        load_config(ToyConfig, path)


@pytest.mark.parametrize("document, key", [({"epochs": "3"}, "epochs"), ({"lr": True}, "lr"), ({"flag": 1}, "flag"),
                                           ({"widths": [1, "x"]}, "widths"), ({"name": 3}, "name")])
def test_wrong_json_types_name_the_key(tmp_path, document, key):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(document))
    with pytest.raises(TypeError, match=repr(key)):
        load_config(ToyConfig, path)


@pytest.mark.parametrize("override, key", [("epochs=two", "epochs"), ("flag=maybe", "flag"), ("widths=[1,", "widths"),
                                           ("lr=fast", "lr"), ("optimizer=adam", "optimizer"), ("epochs=0", "epochs"),
                                           ("ema_decay=1.0", "ema_decay"), ("amp=fp8", "amp"), ("eval_options=[1]", "eval_options")])
def test_bad_override_values_name_the_key(override, key):
    with pytest.raises((ValueError, TypeError), match=repr(key)):
        load_config(ToyConfig, overrides=[override])


def test_override_syntax_and_a_single_string_are_refused():
    with pytest.raises(ValueError, match="key=value"):
        load_config(ToyConfig, overrides=["epochs"])
    with pytest.raises(TypeError, match="list"):
        load_config(ToyConfig, overrides="epochs=2")


def test_bool_and_number_parsing():
    assert parse_override(ToyConfig, "progress=off") == ("progress", False)
    assert parse_override(ToyConfig, "lr=3") == ("lr", 3.0) and isinstance(parse_override(ToyConfig, "lr=3")[1], float)
    assert parse_override(ToyConfig, "ema_decay=0.999") == ("ema_decay", 0.999)


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(ToyConfig, overrides=["epochs=4", "widths=[3,5]", "out=run"])
    written = save_config(cfg, tmp_path / "run")
    assert written == tmp_path / "run" / "config.json"
    again = load_config(ToyConfig, written)
    assert again == cfg and json.loads(written.read_text()) == config_to_dict(cfg)


def test_save_config_refuses_to_write_through_a_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").symlink_to(victim)
    with pytest.raises(FileExistsError):
        save_config(load_config(ToyConfig), tmp_path / "run")
    assert victim.read_text() == "keep"


def test_help_lists_every_field_with_its_default():
    text = config_help(ToyConfig)
    assert "widths (tuple[int, ...], default [8, 16]): channel widths" in text
    assert "batch_size (int, default 32)" in text and 'optimizer (str, default "adamw")' in text
    own = config_help(ToyConfig, own_only=True)
    assert "widths" in own and "batch_size" not in own
