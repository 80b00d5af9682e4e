"""Issue 12, classes 5 and 7 for postmortems: templates are names, incident text is data, and the
draft is written only under the data directory (0600 files, 0700 folders, no symlink followed).

Attacks go through the public surfaces: the ``timeline.postmortem`` action as a step calls it,
``render_postmortem`` as the CLI calls it, and ``runbook postmortem RUN_ID -o FILE``. Each variant
must be refused with a clear message and leave everything as it was (victim files untouched,
nothing written).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runbook.actions import ActionContext, ActionError, Connections, default_registry
from runbook.actions.registry import invoke
from runbook.cli import main
from runbook.core.events import Kind
from runbook.core.settings import Settings
from runbook.store.timeline import TimelineStore
from runbook.timeline.postmortem import TemplateRefused, render_postmortem
from runbook.timeline.recorder import Recorder

RUN = "run-evil-1"
MARKER_NAME = "code-ran"


def evil_title(marker: Path) -> str:
    return (
        "Queue {{ 7*7 }} stuck {% for x in ().__class__.__base__.__subclasses__() %}{{ x }}{% endfor %} "
        f"{{{{ lipsum.__globals__['os'].system('touch {marker}') }}}} {{% raw %}}"
    )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RUNBOOK_TEMPLATES", raising=False)
    return tmp_path / "home"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_text("precious\n")
    path.chmod(0o644)
    return path


@pytest.fixture
def evil_run(store: TimelineStore, tmp_path: Path) -> tuple[str, str]:
    """A run started by a PagerDuty incident whose title and description carry template syntax."""
    title = evil_title(tmp_path / MARKER_NAME)
    incident = {"id": "PEVIL", "title": title, "description": title, "created_at": "2026-11-23T03:00:00Z"}
    store.start_run(
        RUN, "backlog-triage", params={"incident": incident}, incident_id="PEVIL", trigger="pagerduty"
    )
    rec = Recorder(store, RUN, incident_id="PEVIL")
    rec.emit(Kind.RUN_STARTED, f"run started for {title}")
    rec.emit(Kind.FINDING, title, step_id="classify", details={"verdict": title, "evidence": title})
    return RUN, title


def action_ctx(settings: Settings, store: TimelineStore, run_id: str = RUN) -> ActionContext:
    return ActionContext(Connections(settings), run_id=run_id, timeline=Recorder(store, run_id), step_id="pm")


def postmortem(settings: Settings, store: TimelineStore, **params: object) -> object:
    return invoke(default_registry()["timeline.postmortem"], action_ctx(settings, store), params)


def tree(root: Path) -> dict[str, bytes | str]:
    """Everything under ``root`` (symlinks as their target), to compare before and after."""
    out: dict[str, bytes | str] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = p.read_bytes()
    return out


# -- incident text is data --------------------------------------------------------------------------


def test_incident_text_with_template_syntax_renders_verbatim(
    store: TimelineStore, evil_run: tuple[str, str], tmp_path: Path, home: Path
) -> None:
    run_id, title = evil_run
    text = render_postmortem(store, run_id)
    assert text.startswith(f"# Postmortem draft: backlog-triage — {title}\n")
    assert "Queue {{ 7*7 }} stuck" in text and "Queue 49" not in text
    assert "{% for x in ().__class__.__base__.__subclasses__() %}" in text
    assert f"Verdict: **{title}**" in text
    assert "<class " not in text  # no subclass list was produced
    assert not (tmp_path / MARKER_NAME).exists()  # and no code ran


def test_the_action_writes_a_private_draft_under_the_data_directory(
    settings: Settings, store: TimelineStore, evil_run: tuple[str, str], home: Path, tmp_path: Path
) -> None:
    run_id, title = evil_run
    result = postmortem(settings, store)
    path = Path(result.path)  # type: ignore[attr-defined]
    started = (store.get_run(run_id) or {})["started_at"][:10]
    run8 = "".join(c for c in run_id if c.isalnum())[:8]
    assert path == home / "postmortems" / f"{started}-backlog-triage-{run8}.md"  # <date>-<playbook>-<run8>
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert title in path.read_text() and not (tmp_path / MARKER_NAME).exists()
    named = postmortem(settings, store, output="drafts/incident-PEVIL.md")
    assert Path(named.path) == home / "postmortems" / "drafts" / "incident-PEVIL.md"  # type: ignore[attr-defined]
    assert stat.S_IMODE((home / "postmortems" / "drafts").stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(named.path).stat().st_mode) == 0o600  # type: ignore[attr-defined]
    again = postmortem(settings, store)  # a re-render replaces the run's own draft
    assert again.path == result.path  # type: ignore[attr-defined]
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temp file left


# -- output names ---------------------------------------------------------------------------------------

BAD_OUTPUTS = [
    "../../etc/x",
    "../x.md",
    "sub/../../x.md",
    "/tmp/x-runbook-postmortem.md",
    "~/x.md",
    "a\x00b.md",
    "",
]


@pytest.mark.parametrize("output", BAD_OUTPUTS)
def test_output_that_leaves_the_folder_is_refused(
    settings: Settings, store: TimelineStore, evil_run: tuple[str, str], home: Path, output: str
) -> None:
    postmortem(settings, store, output="keep.md")
    before = tree(home)
    with pytest.raises(ActionError, match="refused, nothing written"):
        postmortem(settings, store, output=output)
    assert tree(home) == before
    assert not Path("/tmp/x-runbook-postmortem.md").exists()
    assert not (home.parent / "x.md").exists() and not (home / "x.md").exists()


def test_symlink_at_the_output_name_is_refused_and_its_target_untouched(
    settings: Settings, store: TimelineStore, evil_run: tuple[str, str], home: Path, victim: Path
) -> None:
    folder = home / "postmortems"
    folder.mkdir(parents=True)
    (folder / "evil.md").symlink_to(victim)
    started = (store.get_run(RUN) or {})["started_at"][:10]
    default = f"{started}-backlog-triage-{''.join(c for c in RUN if c.isalnum())[:8]}.md"
    (folder / default).symlink_to(victim)  # the default name too
    before = tree(home)
    for params in ({"output": "evil.md"}, {}, {"output": "evil.md", "overwrite": True}):
        with pytest.raises(ActionError, match="refused, nothing written"):
            postmortem(settings, store, **params)
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert tree(home) == before


def test_symlink_in_a_parent_folder_is_refused(
    settings: Settings, store: TimelineStore, evil_run: tuple[str, str], home: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "victim-dir"
    elsewhere.mkdir()
    (elsewhere / "x.md").write_text("precious\n")
    home.mkdir(mode=0o700)
    (home / "postmortems").mkdir(mode=0o700)
    (home / "postmortems" / "sub").symlink_to(elsewhere)
    with pytest.raises(ActionError, match="symlink"):
        postmortem(settings, store, output="sub/x.md")
    with pytest.raises(ActionError, match="symlink"):
        postmortem(settings, store, output="sub/new.md")
    # the postmortems folder itself planted as a symlink
    (home / "postmortems" / "sub").unlink()
    (home / "postmortems").rmdir()
    (home / "postmortems").symlink_to(elsewhere)
    with pytest.raises(ActionError, match="symlink"):
        postmortem(settings, store)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["x.md"]
    assert (elsewhere / "x.md").read_text() == "precious\n"


# -- template names -------------------------------------------------------------------------------------

BAD_TEMPLATES = [
    "/etc/passwd",
    "../../../../../../etc/passwd",
    "../templates/postmortem.md.j2",
    "~/.bashrc",
    "postmortem.md.j2\x00",
    "",
    "no-such-template.j2",
]


@pytest.mark.parametrize("template", BAD_TEMPLATES)
def test_template_that_is_not_a_packaged_or_configured_name_is_refused(
    settings: Settings, store: TimelineStore, evil_run: tuple[str, str], home: Path, template: str
) -> None:
    with pytest.raises(ActionError, match="template") as err:
        postmortem(settings, store, template=template)
    assert "nothing written" in str(err.value)
    assert not (home / "postmortems").exists()
    with pytest.raises(TemplateRefused):
        render_postmortem(store, RUN, template)


def test_absolute_path_to_a_real_template_is_refused(
    settings: Settings, store: TimelineStore, evil_run: tuple[str, str], home: Path, tmp_path: Path
) -> None:
    own = tmp_path / "own.md.j2"
    own.write_text("{{ run.run_id }}")
    with pytest.raises(TemplateRefused, match="not a path"):
        render_postmortem(store, RUN, str(own), folder=None)


def with_folder(settings: Settings, folder: Path) -> Settings:
    from dataclasses import replace

    return replace(settings, templates_dir=folder)


def test_configured_folder_templates_by_name(
    settings: Settings, store: TimelineStore, evil_run: tuple[str, str], home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "tpl"
    (folder / "teams").mkdir(parents=True)
    (folder / "teams" / "short.md.j2").write_text("Short: {{ run.run_id }} {{ incident.title }}\n")
    (folder / "followups.yaml").write_text("unknown: ['look again']\nalways: ['write it up']\n")
    result = invoke(
        default_registry()["timeline.postmortem"],
        action_ctx(with_folder(settings, folder), store),
        {"template": "teams/short.md.j2"},
    )
    text = Path(result.path).read_text()  # type: ignore[attr-defined]
    assert text.startswith(f"Short: {RUN} ") and "{{ 7*7 }}" in text
    # the packaged template is still found by name when the folder does not override it
    assert "# Postmortem draft" in render_postmortem(store, RUN, folder=folder)


def test_template_symlinks_leaving_the_folder_or_into_the_data_dir_are_refused(
    settings: Settings, store: TimelineStore, evil_run: tuple[str, str], home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "tpl"
    folder.mkdir()
    outside = tmp_path / "outside.j2"
    outside.write_text("{{ run.run_id }}")
    (folder / "out.j2").symlink_to(outside)
    (folder / "loop.j2").symlink_to(folder / "loop.j2")
    # a file the run wrote (here: an earlier draft whose text carries incident data) under the data dir
    earlier = postmortem(settings, store, output="earlier.md")
    (folder / "earlier.j2").symlink_to(earlier.path)  # type: ignore[attr-defined]
    (folder / "dumps").symlink_to(home)
    (folder / "inc.j2").write_text("{% include 'out.j2' %}")
    (folder / "inc2.j2").write_text("{% include '../outside.j2' %}")
    before = tree(home)
    cases = {
        "out.j2": "outside the templates folder",
        "loop.j2": "cannot be resolved",
        "earlier.j2": "inside the runbook data directory",
        "dumps/postmortems/earlier.md": "inside the runbook data directory",
        "inc.j2": "outside the templates folder",
        "inc2.j2": "not a path",
    }
    for name, message in cases.items():
        with pytest.raises(TemplateRefused, match=message):
            render_postmortem(store, RUN, name, folder=folder)
        with pytest.raises(ActionError, match="nothing written"):
            invoke(
                default_registry()["timeline.postmortem"],
                action_ctx(with_folder(settings, folder), store),
                {"template": name, "output": "new.md"},
            )
    assert tree(home) == before


def test_a_configured_folder_inside_the_data_dir_renders_nothing_from_it(
    settings: Settings, store: TimelineStore, evil_run: tuple[str, str], home: Path
) -> None:
    postmortem(settings, store, output="x.md.j2")  # a run-written file with a template-like name
    with pytest.raises(TemplateRefused, match="inside the runbook data directory"):
        render_postmortem(store, RUN, "x.md.j2", folder=home / "postmortems")
    with pytest.raises(TemplateRefused, match="inside the runbook data directory"):
        render_postmortem(store, RUN, "postmortems/x.md.j2", folder=home)


def test_a_runaway_template_fails_the_step_without_writing(
    settings: Settings, store: TimelineStore, evil_run: tuple[str, str], home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "tpl"
    folder.mkdir()
    (folder / "big.j2").write_text("{% for e in range(10000) %}{{ 'x' * 1000 }}{% endfor %}")
    (folder / "mutate.j2").write_text("{{ incident.update({'title': 'changed'}) }}")
    for name, message in (("big.j2", "output too large"), ("mutate.j2", "read-only")):
        with pytest.raises(ActionError, match=message):
            invoke(
                default_registry()["timeline.postmortem"],
                action_ctx(with_folder(settings, folder), store),
                {"template": name},
            )
    assert not (home / "postmortems").exists()


# -- the CLI's -o: the operator's own output, but no symlink followed and 0600 ------------------------------


def test_cli_output_is_private_and_refuses_symlinks(
    settings: Settings,
    store: TimelineStore,
    evil_run: tuple[str, str],
    home: Path,
    tmp_path: Path,
    victim: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RUNBOOK_DATABASE_URL", settings.database_url)
    out = tmp_path / "draft.md"
    assert main(["postmortem", RUN, "-o", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and "{{ 7*7 }}" in out.read_text()
    out.chmod(0o644)
    assert main(["postmortem", RUN, "-o", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # tightened on rewrite
    link = tmp_path / "link.md"
    link.symlink_to(victim)
    capsys.readouterr()
    assert main(["postmortem", RUN, "-o", str(link)]) == 1
    assert "no symlinks" in capsys.readouterr().err
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert not (tmp_path / MARKER_NAME).exists()


def test_a_dry_run_writes_no_postmortem(
    settings: Settings, store: TimelineStore, evil_run: tuple[str, str], home: Path
) -> None:
    run_id, _ = evil_run
    ctx = action_ctx(settings, store)
    ctx.dry_run = True
    result = invoke(default_registry()["timeline.postmortem"], ctx, {})
    assert result.summary == "dry run: no postmortem draft written"  # type: ignore[attr-defined]
    assert not (home / "postmortems").exists() or not list((home / "postmortems").iterdir())
