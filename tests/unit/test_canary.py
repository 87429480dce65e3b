"""Canary rules without a watcher: when one is late, which files are one, how search hides it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from connectors.folder import FolderSource
from freshrag import canary
from freshrag.config import SourceConfig
from freshrag.model import Filters


def _config(**kw: object) -> SourceConfig:
    return SourceConfig(name="docs", type="folder", path="docs", canary=True, **kw)


def test_late_after_two_intervals_and_slack_since_the_last_success_or_start() -> None:
    cfg = _config(canary_interval=10)
    assert canary.late_after(cfg) == 50
    state = {"started": 1000.0, "last_success": 1100.0}
    assert not canary.verdict(cfg, state, 1150.0, since=0)["late"]
    late = canary.verdict(cfg, state, 1151.0, since=0)
    assert late["late"] and late["detail"].startswith("late: last found 51 s ago")
    # a watcher that restarted gets its full grace period again
    assert not canary.verdict(cfg, {**state, "started": 1140.0}, 1180.0, since=0)["late"]
    stopped = canary.verdict(cfg, {**state, "stopped": 1120.0}, 1200.0, since=0)
    assert "the watcher stopped 80 s ago" in stopped["detail"]


def test_without_any_state_the_readers_own_start_is_the_clock() -> None:
    cfg = _config(canary_interval=1, canary_late_after=5)
    assert not canary.verdict(cfg, None, 104.0, since=100.0)["late"]
    never = canary.verdict(cfg, None, 106.0, since=100.0)
    assert never["late"] and "no watcher has run it" in never["detail"]


def test_state_round_trips_under_home(tmp_path: Path) -> None:
    canary.write_state(tmp_path, "docs", {"started": 1.0})
    assert canary.read_state(tmp_path, "docs") == {"started": 1.0}
    assert canary.read_state(tmp_path, "other") is None


def test_the_folder_source_lists_the_canary_only_when_enabled(tmp_path: Path) -> None:
    (tmp_path / "docs" / ".freshrag-canary").mkdir(parents=True)
    (tmp_path / "docs" / ".freshrag-canary" / "canary.txt").write_text("nonce")
    (tmp_path / "docs" / ".freshrag-canary" / ".canary.txt.tmp").write_text("nonce")
    (tmp_path / "docs" / "a.md").write_text("a")
    settings = SimpleNamespace(base_dir=tmp_path, home=tmp_path / "home",
                               parse=SimpleNamespace(max_file_mb=1))
    for enabled, want in ((True, {"a.md", canary.CANARY_KEY}), (False, {"a.md"})):
        cfg = SourceConfig(name="docs", type="folder", path="docs", include=["*.md"],
                           canary=enabled)
        src = FolderSource(cfg, settings)
        assert {c.key for c in src.scan({})} == want


def test_only_a_search_for_the_canary_folder_shows_it() -> None:
    assert canary.asked_for(Filters(doc_key_prefix=".freshrag-canary/"))
    assert not canary.asked_for(Filters(source="docs")) and not canary.asked_for(None)
    assert canary.is_canary(canary.CANARY_KEY) and not canary.is_canary("freshrag-canary.md")
