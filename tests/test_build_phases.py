"""Where a build's time goes: phases recorded in the attempt and shown on the group page, and
the attempt directory removed after the verdict (the reaper), for real backends under the
supervisor. No durations are asserted: only that the phases exist, follow the backend's own
timing line, and add up to the attempt's duration."""

from __future__ import annotations

import shutil
import threading
from dataclasses import replace
from pathlib import Path

from rebuilder.build import run_build
from rebuilder.build.reaper import Reaper
from rebuilder.build.runner import PHASES
from rebuilder.config import Profile, Release
from rebuilder.model import Attempt, GroupRecord, Status
from rebuilder.site import ProfileView, render
from tests.test_runner import COPY, HELLO, backend, context, make_job, read_log, served

__all__ = ["served"]  # the fixture, used by name

TIMED = (
    COPY + '\necho "test-backend: timing: total=0.0s prepare=0.0s build=0.0s cleanup=0.0s" >&2\n'
)


def test_phases_split_the_duration_and_follow_the_backends_timing_line(
    tmp_path: Path, served: tuple[Path, str]
) -> None:
    root, base = served
    ctx = context(tmp_path, backend(tmp_path, TIMED))
    attempt = run_build(make_job(root, base, HELLO), ctx)

    assert attempt.status is Status.GOOD
    assert tuple(attempt.phases) == PHASES
    assert abs(sum(attempt.phases.values()) - attempt.duration) < 0.01
    # the backend said its build took no time: all of its run is preparation
    assert attempt.phases["build"] == 0.0
    assert "timing: prepare=" in read_log(ctx, attempt.files)
    again = Attempt.from_json(attempt.to_json())
    assert set(again.phases) == set(PHASES)

    # a backend without a timing line: its whole run is the build
    plain = run_build(
        make_job(root, base, HELLO, build_id=8),
        replace(ctx, backend=backend(tmp_path, COPY, "b2.sh")),
    )
    assert plain.phases["build"] > 0.0


def test_the_group_page_shows_the_phases(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, base = served
    ctx = context(tmp_path, backend(tmp_path, TIMED), results_dir=tmp_path / "site" / "builds")
    job = make_job(root, base, HELLO)
    attempt = run_build(job, ctx)
    profile = Profile("p", "debian", (Release("bookworm", base),))
    record = GroupRecord(job.group, attempt.status, [attempt])
    render(tmp_path / "site", [ProfileView(profile, {job.group.key: record})])
    (page,) = (tmp_path / "site" / "p").rglob("pkg/hello*.html")
    text = page.read_text()
    for phase in PHASES:
        assert f"{phase} " in text.split("Attempts", 1)[1], phase


def test_the_attempt_dir_goes_after_the_verdict(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, base = served
    script = backend(
        tmp_path, COPY + '\necho "$REBUILDER_DEFERRED_CLEANUP" > "$REBUILDER_META_DIR/deferred"\n'
    )
    gate, removed = threading.Event(), []

    def held(path: Path) -> None:  # holds the reaper until the test has looked
        gate.wait(30)
        shutil.rmtree(path)
        removed.append(path)

    with Reaper() as reaper:
        ctx = context(tmp_path, script, reaper=reaper)
        ctx.work_dir.mkdir(parents=True)
        blocker = ctx.work_dir / "earlier"
        blocker.mkdir()
        reaper.discard(blocker, held)
        attempt = run_build(make_job(root, base, HELLO), ctx)
        # the verdict is back while the attempt's directory still waits for its removal
        assert attempt.status is Status.GOOD
        assert (ctx.results_dir / "7" / "meta" / "deferred").read_text() == "1\n"
        assert len(list(ctx.work_dir.iterdir())) == 2
        gate.set()
    assert removed == [blocker]
    assert list(ctx.work_dir.iterdir()) == []


def test_without_a_reaper_the_dir_goes_before_the_verdict(
    tmp_path: Path, served: tuple[Path, str]
) -> None:
    root, base = served
    script = backend(
        tmp_path,
        COPY + '\necho "${REBUILDER_DEFERRED_CLEANUP:-no}" > "$REBUILDER_META_DIR/deferred"\n',
    )
    ctx = context(tmp_path, script)
    attempt = run_build(make_job(root, base, HELLO), ctx)
    assert (ctx.results_dir / "7" / "meta" / "deferred").read_text() == "no\n"
    assert attempt.status is Status.GOOD and list(ctx.work_dir.iterdir()) == []
