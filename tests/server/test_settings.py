"""Settings from CVMON_* variables over cvmon.yaml."""

from __future__ import annotations

import pytest

from monitor.errors import ConfigError
from monitor.server.settings import Settings


def test_defaults_use_embedded_sqlite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.load({})
    assert s.database_url == "sqlite:///./cvmon.db" and s.is_sqlite and not s.auth_disabled


def test_environment_overrides_yaml(tmp_path):
    cfg = tmp_path / "cvmon.yaml"
    cfg.write_text("database_url: sqlite:///from-yaml.db\ncohort_keys: [camera, site]\nmax_body_bytes: 2048\nslos: []\n")
    s = Settings.load({"CVMON_CONFIG": str(cfg), "CVMON_DATABASE_URL": "postgresql://u@h/db", "CVMON_AUTH_DISABLED": "1"})
    assert s.database_url == "postgresql://u@h/db"
    assert s.sqlalchemy_url == "postgresql+psycopg://u@h/db"
    assert s.auth_disabled is True
    assert s.cohort_keys == ("camera", "site") and s.max_body_bytes == 2048
    assert "slos" in s.extra and s.config_text is not None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"CVMON_AUTH_DISABLED": "perhaps"}, "expected a boolean", id="bad-bool"),
        pytest.param({"CVMON_MAX_BODY_BYTES": "lots"}, "max_body_bytes", id="bad-int"),
        pytest.param({"CVMON_DATABASE_URL": "mysql://x"}, "database_url must be", id="unsupported-db"),
        pytest.param({"CVMON_PII_HASH": "site"}, "needs pii.hash_key", id="hash-without-key"),
        pytest.param({"CVMON_CONFIG": "/nonexistent/cvmon.yaml"}, "does not exist", id="missing-config"),
    ],
)
def test_bad_settings_are_explained(env, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        Settings.load(env)


def test_yaml_syntax_error_points_at_the_line(tmp_path):
    cfg = tmp_path / "cvmon.yaml"
    cfg.write_text("database_url: sqlite:///x.db\ncohort_keys: [camera\n")
    with pytest.raises(ConfigError, match=r"cvmon.yaml:\d+"):
        Settings.load({"CVMON_CONFIG": str(cfg)})
