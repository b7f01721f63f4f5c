"""The shared batch runner (dermoseg.batch): failures, warnings, stems, own outputs, overwrite refusal."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from dermoseg.batch import BatchItemError, rows_to_csv, run_batch, unique_stems
from dermoseg.provenance import OutputFolderError, held_folders


def test_unique_stems_and_csv_hand_made(tmp_path):
    paths = [tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.png", tmp_path / "y.jpg", tmp_path / "c" / "x.bmp"]
    assert unique_stems(paths) == ["x", "x__2", "y", "x__3"]
    text = rows_to_csv([{"id": "a", "v": 1 / 3}, {"id": "b", "extra": 2}], ["id", "v"])
    assert text == "id,v,extra\na,0.333333,\nb,,2\n"


def test_a_file_named_like_a_renamed_duplicate_gets_its_own_outputs(tmp_path, isic_samples):
    """a/x.jpg, b/x.jpg and x__2.jpg all got the stem x or x__2: the second x's mask was overwritten by x__2.jpg's
    in the same run, and results.csv held two rows with image_id x__2."""
    assert unique_stems([tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg", tmp_path / "x__2.jpg"]) == \
        ["x", "x__2", "x__2__2"]
    assert unique_stems([tmp_path / "x__2.jpg", tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg"]) == \
        ["x__2", "x", "x__3"]
    src = tmp_path / "in"
    for i, rel in enumerate(["a/x.jpg", "b/x.jpg", "x__2.jpg"]):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(isic_samples[i].image_path, src / rel)
    seen = []

    def process(path, stem, image):
        seen.append(stem)
        return {"image_id": stem}

    report = run_batch([str(src)], tmp_path / "out", process, desc="test", progress=False)
    assert len(report.rows) == 3 and len(set(seen)) == 3


def test_process_errors_and_warnings_are_reported_and_the_batch_goes_on(tmp_path, isic_samples, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        shutil.copy(isic_samples[i].image_path, src / f"im{i}.jpg")
    (src / "broken.jpg").write_bytes(b"not an image")

    def process(path, stem, image):
        if stem == "im1":
            raise BatchItemError("rejected by the command")
        return {"image_id": stem, "h": image.shape[0], "warning": "odd" if stem == "im2" else ""}

    report = run_batch([str(src)], tmp_path / "out", process, desc="test", progress=False)
    assert [r["image_id"] for r in report.rows] == ["im0", "im2"]
    assert all(r["seconds"] >= 0 for r in report.rows)
    failures = dict(report.failures)
    assert set(failures) == {str(src / "broken.jpg"), str(src / "im1.jpg")}
    assert failures[str(src / "im1.jpg")] == "rejected by the command" and failures[str(src / "broken.jpg")]
    assert report.warnings == [(str(src / "im2.jpg"), "odd")] and report.exit_code == 1
    with open(tmp_path / "out" / "failures.csv", newline="") as fh:
        assert {r["file"] for r in csv.DictReader(fh)} == {str(src / "broken.jpg"), str(src / "im1.jpg")}
    err = capsys.readouterr().err
    assert "warning: " + str(src / "im2.jpg") + ": odd" in err and "error: " + str(src / "im1.jpg") in err


def test_own_outputs_skipped_and_files_not_written_by_dermoseg_never_overwritten(tmp_path, isic_samples):
    folder = tmp_path / "f"
    folder.mkdir()
    shutil.copy(isic_samples[0].image_path, folder / "a.jpg")
    shutil.copy(isic_samples[1].image_path, folder / "a_out.jpg")  # looks like an output of "a", but is the user's
    before = (folder / "a_out.jpg").read_bytes()
    seen = []
    kwargs = dict(desc="t", outputs=lambda stem: [folder / f"{stem}_out.jpg"],
                  is_own_output=lambda p: p.stem.endswith("_out"), progress=False)
    with pytest.raises(OutputFolderError, match="a_out.jpg: exists and was not written by dermoseg"):
        run_batch([str(folder)], folder, lambda p, s, im: seen.append(s) or {"id": s}, **kwargs)
    assert seen == [] and (folder / "a_out.jpg").read_bytes() == before  # refused before any work
    # a refusal raised before the run record starts (every output would overwrite an input) releases the lock
    with pytest.raises(OutputFolderError, match="every input's outputs would overwrite an input"):
        run_batch([str(folder / "a.jpg")], folder, lambda p, s, im: {"id": s}, desc="t", progress=False,
                  outputs=lambda stem: [folder / f"{stem}.jpg"])
    assert not held_folders()
    # once a dermoseg run.json lists it as an output, it is skipped as an input and may be replaced
    (folder / "run.json").write_text(json.dumps({"tool": "dermoseg", "outputs": ["a_out.jpg"]}))
    def write(p, s, im):  # the command writes its output (a fresh run removed the earlier one first)
        seen.append(s)
        (folder / f"{s}_out.jpg").write_bytes(p.read_bytes())
        return {"id": s}

    report = run_batch([str(folder)], folder, write, **kwargs)
    assert seen == ["a"] and report.exit_code == 0
    # named explicitly, a_out.jpg is an input, so writing a_out.jpg for "a" would overwrite it: refused
    seen.clear()
    report = run_batch([str(folder / "a.jpg"), str(folder / "a_out.jpg")], folder,
                       lambda p, s, im: seen.append(s) or {"id": s}, **kwargs)
    assert seen == ["a_out"]
    assert report.failures and "overwrite" in report.failures[0][1]


def test_shards_are_deterministic_disjoint_and_together_every_image(tmp_path, isic_samples, capsys):
    from dermoseg.batch import parse_shard
    from dermoseg.cli import main
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for i in range(7):  # two files share the stem "x": its unique names must not depend on the shard
        shutil.copy(isic_samples[i].image_path, src / ("sub" if i % 2 else ".") / ("x.jpg" if i < 2 else f"im{i}.jpg"))

    def run(shard=None):
        return [(r["file"], r["id"]) for r in run_batch([str(src)], tmp_path / "out", lambda p, s, im: {"file": str(p), "id": s},
                                                        desc="t", progress=False, shard=shard).rows]

    everything = run()
    shards = [run((i, 3)) for i in (1, 2, 3)]
    assert len(everything) == 7 and all(shards)
    assert sorted(sum(shards, [])) == sorted(everything)  # together every image, under the unsharded names
    assert len(set(sum(shards, []))) == 7  # disjoint
    # more shards than images: an empty shard is not a failure (review finding: it exited 1)
    assert run_batch([str(src / "im2.jpg")], tmp_path / "few", lambda p, s, im: {"id": s}, desc="t",
                     progress=False, shard=(2, 3)).exit_code == 0
    assert shards == [run((i, 3)) for i in (1, 2, 3)]  # deterministic
    assert parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "a/3", "3"):
        assert main(["segment", str(src), "--out", str(tmp_path / "o"), "--shard", bad]) == 2
        assert "--shard expects I/N" in capsys.readouterr().err
    two = tmp_path / "two"
    two.mkdir()
    for i in range(2):
        shutil.copy(isic_samples[i].image_path, two / f"im{i}.jpg")
    for i in (1, 2):
        assert main(["segment", str(two), "--out", str(tmp_path / f"s{i}"), "--no-tta", "--shard", f"{i}/2"]) == 0
    assert [sorted(p.name for p in (tmp_path / f"s{i}").glob("*_segmentation.png")) for i in (1, 2)] == \
        [["im0_segmentation.png"], ["im1_segmentation.png"]]


def test_ctrl_c_between_rows_stops_the_pipeline_before_run_json_is_final(tmp_path, isic_samples):
    """Ctrl-C can land in run_batch's own loop (appending a row) rather than while it waits for the pipeline; the
    stage threads must be stopped before run.json's final list of outputs is written, or a file they write after
    it is one that 'dermoseg did not write' and a --resume into the folder is refused."""
    import threading
    import time

    from dermoseg.batch import Stages
    from dermoseg.io import write_text
    from dermoseg.tables import CsvTable

    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        shutil.copy(isic_samples[i].image_path, src / f"im{i}.jpg")
    out = tmp_path / "out"

    class Interrupted(CsvTable):
        def append(self, row):
            raise KeyboardInterrupt  # as if Ctrl-C were pressed while the first row is written

    def finish(path, stem, image, y):
        if stem != "im0":
            time.sleep(0.3)  # the next image is still being finished when the interrupt comes
        write_text(out / f"{stem}.txt", stem)
        return {"image_id": stem}

    before = threading.active_count()
    with pytest.raises(KeyboardInterrupt):
        run_batch([str(src)], out, Stages(lambda image: None, lambda x: None, finish), desc="test", progress=False,
                  outputs=lambda stem: [out / f"{stem}.txt"], tables=[Interrupted(out / "t.csv", ["image_id"], "image_id")])
    assert threading.active_count() == before  # no stage thread left running after run_batch returned
    time.sleep(0.5)
    listed = set(json.loads((out / "run.json").read_text())["outputs"])
    assert {p.name for p in out.glob("*.txt")} <= listed


def test_resume_knows_an_input_however_its_path_is_written_and_keeps_a_same_named_new_one_apart(
        tmp_path, isic_samples, monkeypatch):
    """Try-out findings: --resume matched earlier rows by the path as typed, so `in` then `/abs/in` (or `.` from
    inside it) redid every image and left duplicate rows; and a new rB/x.jpg resumed into a folder holding rA/x.jpg's
    outputs replaced them, leaving rA's row pointing at rB's mask."""
    from dermoseg.tables import CsvTable
    for folder, i in (("rA", 0), ("rB", 1)):
        (tmp_path / folder).mkdir()
        shutil.copy(isic_samples[i].image_path, tmp_path / folder / "x.jpg")
    shutil.copy(isic_samples[2].image_path, tmp_path / "rA" / "y.jpg")
    out = tmp_path / "out"
    seen = []

    def process(path, stem, image):
        seen.append((stem, path.resolve()))
        (out / f"{stem}_mask.png").write_bytes(str(path.resolve()).encode())
        return {"image_id": stem, "file": str(path)}

    def run(inputs, resume):
        table = CsvTable(out / "results.csv", ["image_id", "file"], key="image_id")
        return run_batch(inputs, out, process, desc="test", progress=False, tables=[table], resume=resume,
                         outputs=lambda stem: [out / f"{stem}_mask.png"])

    monkeypatch.chdir(tmp_path)
    run(["rA"], resume=False)
    assert [s for s, _ in seen] == ["x", "y"]
    for again in ([str(tmp_path / "rA")], ["./rA/../rA"]):  # the same files, written another way: nothing redone
        report = run(again, resume=True)
        assert report.resumed == 2 and len(seen) == 2
    monkeypatch.chdir(tmp_path / "rA")
    assert run(["."], resume=True).resumed == 2 and len(seen) == 2
    monkeypatch.chdir(tmp_path)
    run(["rB"], resume=True)  # another x.jpg: its own stem, the earlier x's mask untouched
    assert seen[-1] == ("x__2", (tmp_path / "rB" / "x.jpg").resolve())
    assert (out / "x_mask.png").read_bytes() == str((tmp_path / "rA" / "x.jpg").resolve()).encode()
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image_id"] for r in rows] == ["x", "y", "x__2"]
    sources = json.loads((out / "run.json").read_text())["sources"]["test"]
    assert sources == {"x": str((tmp_path / "rA" / "x.jpg").resolve()), "y": str((tmp_path / "rA" / "y.jpg").resolve()),
                       "x__2": str((tmp_path / "rB" / "x.jpg").resolve())}
    # another command's run into the folder keeps its own sources apart (review finding: a fresh preprocess of
    # rB replaced them, and a segment --resume of rB then took rB/x.jpg for the x it had done from rA)
    other = run_batch(["rB"], out, lambda path, stem, image: {"image_id": stem}, desc="other", progress=False)
    assert len(other.rows) == 1
    assert json.loads((out / "run.json").read_text())["sources"]["test"] == sources
    assert run(["rA", "rB"], resume=True).resumed == 3


def test_resume_finds_an_archive_moved_elsewhere_and_a_folder_written_before_sources(tmp_path, isic_samples,
                                                                                  monkeypatch):
    """Review findings: matching by resolved path alone redid every image (as x__2) when the archive was moved
    or mounted elsewhere and named the same way; a folder without run.json sources (written by an earlier
    version) took a new same-named input for the one it had done. The tables' file cells, as written, match too."""
    from dermoseg.tables import CsvTable
    out = tmp_path / "out"
    seen = []

    def process(path, stem, image):
        seen.append(stem)
        (out / f"{stem}_mask.png").write_bytes(b"m")
        return {"image_id": stem, "file": str(path)}

    def run(inputs, resume):
        return run_batch(inputs, out, process, desc="test", progress=False, resume=resume,
                         tables=[CsvTable(out / "results.csv", ["image_id", "file"], key="image_id")],
                         outputs=lambda stem: [out / f"{stem}_mask.png"])

    first, second = tmp_path / "site1", tmp_path / "site2"
    for site in (first, second):
        (site / "archive").mkdir(parents=True)
    shutil.copy(isic_samples[0].image_path, first / "archive" / "x.jpg")
    monkeypatch.chdir(first)
    run(["archive"], resume=False)
    shutil.move(str(first / "archive" / "x.jpg"), second / "archive" / "x.jpg")  # the archive moves
    monkeypatch.chdir(second)
    assert run(["archive"], resume=True).resumed == 1 and seen == ["x"]
    record = json.loads((out / "run.json").read_text())  # as an earlier version wrote it: no sources
    del record["sources"]
    (out / "run.json").write_text(json.dumps(record))
    (tmp_path / "new").mkdir()
    shutil.copy(isic_samples[1].image_path, tmp_path / "new" / "x.jpg")
    assert run(["archive", str(tmp_path / "new")], resume=True).resumed == 1 and seen == ["x", "x__2"]
