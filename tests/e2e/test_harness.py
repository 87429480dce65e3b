"""The harness itself drives the installed command from another folder."""

from __future__ import annotations

from tests.e2e.userpath import Project


def test_installed_command_runs_from_elsewhere(project: Project) -> None:
    done = project.run("--help", with_config=False)
    assert done.returncode == 0, done.stderr
    assert "sync" in done.stdout
    assert project.elsewhere.is_dir() and not any(project.elsewhere.iterdir())
