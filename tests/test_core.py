"Settings, presets, overrides and the CLI dispatcher."
import configparser

import pytest

from medsyn.cli import COMMANDS
from medsyn.core import SCHEMA, MedsynError, load_settings, presets, settings_path, split_overrides


def test_settings_file_matches_schema_and_has_presets():
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(settings_path())
    assert set(cp.defaults()) == set(SCHEMA)
    assert {"smoke", "quick", "cpu", "paper"} <= set(presets())
    for p in presets():
        assert set(cp[p]) <= set(SCHEMA), p
        load_settings(p)  # every preset validates


def test_settings_comment_points_to_nbdev_config():
    assert "pyproject.toml" in settings_path().read_text().split("[DEFAULT]")[0]


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(MedsynError, match="unknown preset 'fast'"):
        load_settings("fast")
    with pytest.raises(MedsynError, match="Allowed: l2, l1, huber, pseudo_huber"):
        load_settings("smoke", loss="mse")
    bad = tmp_path / "settings.ini"
    bad.write_text(settings_path().read_text().replace("batch_size = 128", "batch_size = big", 1))
    with pytest.raises(MedsynError, match="'batch_size' must be of type int"):
        load_settings(path=bad)


def test_overrides_from_argv():
    rest, over = split_overrides(["--dataset", "x", "--train_steps", "3", "--fid-features", "64,2048"])
    assert rest == ["--dataset", "x"]
    s = load_settings("smoke", **over)
    assert s.train_steps == 3 and s.fid_features == [64, 2048]


@pytest.mark.parametrize("cmd", list(COMMANDS))
def test_every_subcommand_has_help(cli, cmd):
    p = cli(cmd, "--help")
    assert p.returncode == 0, p.stderr
    assert "usage: medsyn" in p.stdout


def test_top_level_help_lists_commands(cli):
    p = cli("--help", check=True)
    for c in COMMANDS:
        assert c in p.stdout
