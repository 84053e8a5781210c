"""Packing a sweep for transport: results without checkpoints, checkpoints of unfinished runs in parts; round trip."""

import re
import tarfile

import pytest
from conftest import TINY_SWEEP

from icl_regression import engine, names, sweep, transport
from icl_regression.store import RunStore, StoreError


@pytest.fixture(scope="module")
def half_done_sweep(tmp_path_factory):
    """The tiny sweep with its batch-16 group finished and its batch-32 group stopped at step 40 of 60."""
    workdir = tmp_path_factory.mktemp("transport") / "sweep"
    cells = sweep.expand(TINY_SWEEP, workdir)
    workdir.mkdir(parents=True)
    sweep.record_sweep_config(workdir, TINY_SWEEP)
    for batch, stop_at in ((16, None), (32, 40)):
        group = [c for c in cells if c.config.train.batch_size == batch]
        engine.GroupTrainer([c.config for c in group], [c.run_dir for c in group]).run(stop_after_step=stop_at)
    sweep.write_index(workdir, cells)
    return workdir, cells


def test_results_archive_holds_results_and_no_checkpoints(half_done_sweep, tmp_path):
    workdir, cells = half_done_sweep
    (archive,) = transport.pack_results(workdir, tmp_path)
    assert archive.name == "sweep-results.tar.gz"
    with tarfile.open(archive) as tar:
        members = set(tar.getnames())
    assert {names.SWEEP_CONFIG_FILE, names.SWEEP_INDEX_FILE, names.SWEEP_CONFIG_HISTORY_FILE} <= members
    for cell in cells:
        rel = cell.run_dir.relative_to(workdir)
        assert {f"{rel}/{names.CONFIG_FILE}", f"{rel}/{names.METRICS_FILE}"} <= members
        assert (f"{rel}/{names.SUMMARY_FILE}" in members) == (cell.config.train.batch_size == 16)
    assert not [m for m in members if "checkpoint" in m or m.endswith((".msgpack", "LOCK", "RUNNING"))]


def test_checkpoint_parts_round_trip_and_resume(half_done_sweep, tmp_path):
    workdir, cells = half_done_sweep
    out = tmp_path / "out"
    (results,) = transport.pack_results(workdir, out)
    parts, left_out = transport.pack_checkpoints(workdir, out, part_bytes=64 * 1024)
    assert left_out == [] and len(parts) >= 2  # small parts force a split
    assert all(p.stat().st_size <= 64 * 1024 for p in parts)
    unfinished = [c for c in cells if c.config.train.batch_size == 32]
    assert sorted(transport.unfinished_checkpoints(workdir)) == sorted(
        (c.run_dir / names.CHECKPOINT_DIR / "step_40.msgpack").relative_to(workdir) for c in unfinished)

    elsewhere = tmp_path / "elsewhere"
    transport.unpack([out], elsewhere)
    for cell in cells:
        rel = cell.run_dir.relative_to(workdir)
        for name in (names.CONFIG_FILE, names.METRICS_FILE, names.SUMMARY_FILE):
            source = workdir / rel / name
            assert (elsewhere / rel / name).exists() == source.exists()
            if source.exists():
                assert (elsewhere / rel / name).read_bytes() == source.read_bytes()
    for rel in transport.unfinished_checkpoints(workdir):
        assert (elsewhere / rel).read_bytes() == (workdir / rel).read_bytes()

    # The unpacked folder resumes from the carried checkpoints and finishes.
    moved = [c.run_dir for c in unfinished]
    there = [elsewhere / d.relative_to(workdir) for d in moved]
    trainer = engine.GroupTrainer([c.config for c in unfinished], there)
    assert trainer.run()
    for run_dir in there:
        assert RunStore(run_dir).state() == names.DONE
        assert [r["step"] for r in RunStore(run_dir).metrics()] == [0, 20, 40, 60]
    assert results.exists()


def test_max_parts_packs_whole_runs_that_fit(half_done_sweep, tmp_path):
    workdir, _ = half_done_sweep
    unfinished = transport.unfinished_checkpoints(workdir)
    size = max((workdir / rel).stat().st_size for rel in unfinished)
    parts, left_out = transport.pack_checkpoints(workdir, tmp_path, part_bytes=size + 20 * 1024, max_parts=1)
    assert len(parts) == 1 and len(left_out) == len(unfinished) - 1 >= 1


def test_unpack_refuses_paths_outside_the_folder(tmp_path):
    evil = tmp_path / "evil-results.tar.gz"
    (tmp_path / "x").write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(tmp_path / "x", arcname="../../escaped")
    with pytest.raises(StoreError, match="refusing"):
        transport.unpack([evil], tmp_path / "target")
    assert not (tmp_path.parent / "escaped").exists()


def test_names_are_safe_for_a_lease():
    assert transport.safe_stem("M=4 B=256/x") == "M_4_B_256_x"
    assert transport.safe_stem("...") == "sweep"


def test_a_large_results_archive_travels_in_parts(half_done_sweep, tmp_path):
    workdir, cells = half_done_sweep
    parts = transport.pack_results(workdir, tmp_path / "out", part_bytes=4 * 1024)
    assert len(parts) >= 2 and all(p.stat().st_size <= 4 * 1024 for p in parts)
    assert all(re.fullmatch(r"sweep-results\.tar\.gz\.part\d\d", p.name) for p in parts)
    transport.unpack([tmp_path / "out"], tmp_path / "back")
    for rel in transport.result_files(workdir):
        assert (tmp_path / "back" / rel).read_bytes() == (workdir / rel).read_bytes(), rel


def _packed(workdir, out, kind, part_bytes=transport.PART_BYTES):
    if kind == "results":
        return transport.pack_results(workdir, out, part_bytes=part_bytes)
    return transport.pack_checkpoints(workdir, out, part_bytes=part_bytes)[0]


@pytest.mark.parametrize("kind", ["results", "checkpoints"])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_archive_is_refused_naming_it(half_done_sweep, tmp_path, kind, damage):
    """Before, tarfile.ReadError, EOFError or zlib.error tracebacks."""
    workdir, _ = half_done_sweep
    parts = _packed(workdir, tmp_path / "out", kind)
    data = parts[-1].read_bytes()
    parts[-1].write_bytes(data[:len(data) // 2] if damage == "truncated" else b"not an archive " * 100)
    with pytest.raises(StoreError, match=rf"^{re.escape(str(parts[0]))}.* is not a complete archive \(.+\): it was "
                                         r"cut short or damaged; copy it again \(every part\), or pack the sweep again"):
        transport.unpack(parts, tmp_path / "back")


def test_an_archive_missing_a_part_is_refused(half_done_sweep, tmp_path):
    workdir, _ = half_done_sweep
    parts = _packed(workdir, tmp_path / "out", "checkpoints", part_bytes=64 * 1024)
    parts[0].unlink()
    with pytest.raises(StoreError, match=r"sweep-checkpoints\.tar lacks part\(s\) 00 \(found sweep-checkpoints\.tar"
                                         r"\.part01.*\); copy every part"):
        transport.unpack([tmp_path / "out"], tmp_path / "back")


def test_an_interrupted_packing_leaves_no_part_that_looks_complete(half_done_sweep, tmp_path, monkeypatch):
    """Parts are written under temporary names and renamed only once the whole archive is written."""
    workdir, _ = half_done_sweep
    add, added = tarfile.TarFile.addfile, []

    def add_then_fail(self, *args, **kwargs):
        if added:
            raise RuntimeError("interrupted")
        added.append(args)
        add(self, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "addfile", add_then_fail)
    with pytest.raises(RuntimeError, match="interrupted"):
        transport.pack_checkpoints(workdir, tmp_path / "out", part_bytes=4 * 1024)
    assert added and list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("kind", ["results", "checkpoints"])
def test_a_changed_byte_anywhere_is_refused_and_nothing_is_unpacked(half_done_sweep, tmp_path, kind):
    """tar and gzip in stream mode check nothing: a changed byte was written as it was (a checkpoint weight
    1906.0 came back as 1394.0), or a damaged header ended the archive early with files silently missing."""
    workdir, _ = half_done_sweep
    parts = _packed(workdir, tmp_path / "out", kind)
    data = parts[0].read_bytes()
    # From past gzip's 10-byte header (its time stamp is no content) to the last byte that is not the tar's zero
    # padding: tar headers, contents, the manifest, the gzip trailer (its CRC and length).
    end = len(data.rstrip(b"\0"))
    for position in [*range(10, end, end // 23), end - 1]:
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        parts[0].write_bytes(bytes(damaged))
        target = tmp_path / f"back_{position}"
        with pytest.raises(StoreError, match=r"is (not a complete archive|damaged)|refusing"):
            transport.unpack(parts, target)
        assert not target.exists() or not [p for p in target.rglob("*") if p.is_file()], position
    parts[0].write_bytes(data)
    assert transport.unpack(parts, tmp_path / "intact")


def test_a_damaged_archive_leaves_the_folder_as_it_was(half_done_sweep, tmp_path):
    """Before, the files read before the damage had already replaced those of the sweep folder."""
    workdir, _ = half_done_sweep
    (archive,) = transport.pack_results(workdir, tmp_path / "out")
    target = tmp_path / "target"
    transport.unpack([archive], target)
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    metrics = next(p for p in before if p.name == names.METRICS_FILE)
    metrics.write_text("")  # the folder's state that a damaged archive must not touch
    data = archive.read_bytes()
    archive.write_bytes(data[:2 * len(data) // 3])
    with pytest.raises(StoreError, match="not a complete archive"):
        transport.unpack([archive], target)
    assert metrics.read_text() == "" and not (target / transport.STAGING_DIR).exists()


def test_stored_analyses_travel_with_the_results(half_done_sweep, tmp_path):
    workdir, _ = half_done_sweep
    analysis = workdir / names.ANALYSIS_DIR / "landscape.json"
    analysis.parent.mkdir(exist_ok=True)
    analysis.write_text('{"pairs": []}')
    try:
        (archive,) = transport.pack_results(workdir, tmp_path / "out")
        transport.unpack([archive], tmp_path / "back")
        assert (tmp_path / "back" / names.ANALYSIS_DIR / "landscape.json").read_text() == '{"pairs": []}'
    finally:
        analysis.unlink()


def test_repacking_with_nothing_unfinished_removes_earlier_checkpoint_parts(half_done_sweep, tmp_path):
    workdir, _ = half_done_sweep
    out = tmp_path / "out"
    (earlier,) = transport.pack_checkpoints(workdir, out)[0]
    finished = tmp_path / "finished"
    transport.unpack([transport.pack_results(workdir, tmp_path / "results")[0]], finished)
    (finished / names.RUNS_DIR).mkdir(exist_ok=True)
    assert transport.pack_checkpoints(finished, out, stem="sweep") == ([], [])
    assert not earlier.exists()  # it would be carried and unpacked again


def test_max_bytes_packs_whole_runs_within_the_budget(half_done_sweep, tmp_path):
    workdir, _ = half_done_sweep
    unfinished = transport.unfinished_checkpoints(workdir)
    size = max((workdir / rel).stat().st_size for rel in unfinished)
    parts, left_out = transport.pack_checkpoints(workdir, tmp_path, max_bytes=size + 20 * 1024)
    assert len(left_out) == len(unfinished) - 1 >= 1
    assert sum(p.stat().st_size for p in parts) <= size + 20 * 1024


def test_unpacking_a_path_that_does_not_exist_is_one_line(tmp_path):
    with pytest.raises(StoreError, match=r"/nowhere-results\.tar\.gz does not exist; allowed: archives"):
        transport.unpack([tmp_path / "nowhere-results.tar.gz"], tmp_path / "target")


def test_unpacked_metrics_replace_the_other_form_of_an_older_file(half_done_sweep, tmp_path):
    """Readers prefer metrics.jsonl: an older plain file left beside a newer compressed one hid it (a finished run
    read as unfinished, and the engine then deleted the compressed file and the final checkpoint)."""
    workdir, cells = half_done_sweep
    copy = tmp_path / "compressed"
    transport.unpack([transport.pack_results(workdir, tmp_path / "plain_out")[0]], copy)
    finished = next(c for c in cells if c.config.train.batch_size == 16)
    run_dir = copy / finished.run_dir.relative_to(workdir)
    complete = RunStore(run_dir).metrics()
    transport.compress_finished_metrics(copy)
    (compressed,) = transport.pack_results(copy, tmp_path / "gz_out")
    target = tmp_path / "target"
    older = target / finished.run_dir.relative_to(workdir) / names.METRICS_FILE
    older.parent.mkdir(parents=True)
    older.write_text("")  # an older plain file: no records yet
    transport.unpack([compressed], target)
    assert not older.exists() and RunStore(older.parent).metrics() == complete


def test_the_newest_checkpoint_of_an_unfinished_run_is_the_one_that_travels(tmp_path):
    """With several checkpoints kept (step 9 and step 40), the carried one must be the newest, else the run
    resumes from step 9 elsewhere and silently redoes (or loses) the work."""
    run_dir = tmp_path / names.RUNS_DIR / "M=2_B=16_seed=0"
    (run_dir / names.CHECKPOINT_DIR).mkdir(parents=True)
    (run_dir / names.CONFIG_FILE).write_text("{}")
    for step in (9, 40):
        (run_dir / names.CHECKPOINT_DIR / f"step_{step}.msgpack").write_bytes(b"x" * step)
    assert transport.unfinished_checkpoints(tmp_path) == [
        (run_dir / names.CHECKPOINT_DIR / "step_40.msgpack").relative_to(tmp_path)]
