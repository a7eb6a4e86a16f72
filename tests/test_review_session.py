"""Reading sessions: blinded order per reader, resume, amendments as history, agreement statistics checked
against values computed by hand, the batch explain job (real model, resumable), and bad input.

Every test name contains ``session`` (``pytest -k session``)."""

from __future__ import annotations

import math
import os
import random
import sqlite3

import numpy as np
import pytest
from tests_support import SMALL_FIT, synthetic_explanation

from medimg.cli import main
from medimg.errors import ConfigError, ReviewError
from medimg.explain.batch import case_dir, explain_cases, precomputed, save_explanation
from medimg.review import CANNOT_ASSESS, SCHEMA_VERSION, Feedback, FeedbackStore, open_session, study_agreement
from medimg.review.study.agreement import cohen_kappa
from medimg.review.study.app import ENV_CASES, ENV_EXPLANATIONS, ENV_STORE, reading_app
from medimg.review.study.session_view import SessionWidget
from medimg.review.study.worklist import read_worklist, reader_order

SHA = "a" * 64


@pytest.fixture
def study(tmp_path):
    """Four cases (CSV list, precomputed explanations) and a fifth listed whose file is missing."""
    rows = ["case_id,image"]
    for i in range(4):
        ex = synthetic_explanation(i)
        ex.image.save(tmp_path / f"c{i}.nii.gz")
        save_explanation(ex, case_dir(tmp_path / "ex", f"c{i}"))
        rows.append(f"c{i},c{i}.nii.gz")
    rows.append("c9,not-there.nii.gz")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    return {"cases": tmp_path / "cases.csv", "ex": tmp_path / "ex", "store": tmp_path / "r.sqlite"}


def _open(study, reader: str) -> SessionWidget:
    state = open_session(study["cases"], store=study["store"], reader=reader, precomputed=study["ex"])
    return SessionWidget(state)


def _answer(view: SessionWidget, verdict: str) -> None:
    assert view.viewer is not None
    view.viewer.verdict.value = verdict
    view.viewer.submit.click()


# --- blinding -------------------------------------------------------------------------------------------------


def test_session_order_stable_per_reader_and_differs_between_readers():
    ids = [f"case{i:02d}" for i in range(30)]
    ada = [ids[i] for i in reader_order(ids, "Dr. Ada")]
    assert sorted(ada) == ids  # every case once
    assert ada == [ids[i] for i in reader_order(ids, "Dr. Ada")]  # the next sitting: the same order
    assert ada == [ids[i] for i in reader_order(ids, "  dr. ada ")]  # name typed slightly differently
    shuffled = random.Random(3).sample(ids, len(ids))  # the list read in another order from disk
    assert [shuffled[i] for i in reader_order(shuffled, "Dr. Ada")] == ada
    assert [ids[i] for i in reader_order(ids, "Dr. Bo")] != ada
    assert ada != ids


def test_session_is_blinded_and_resumes_at_first_unanswered(study):
    ada = _open(study, "Dr. Ada")
    order = [c.case_id for c in ada.state.cases]
    assert ada.state.position == 0 and "case 1 of 4" in ada.header.value
    _answer(ada, "agree")
    ada.next.click()
    _answer(ada, "partly")
    again = _open(study, "Dr. Ada")  # the next sitting
    assert [c.case_id for c in again.state.cases] == order
    assert again.state.position == 2 and "case 3 of 4" in again.header.value
    again.show(0)
    assert again.viewer is not None and again.viewer.verdict.value == "agree"  # own answer shown
    bo = _open(study, "Dr. Bo")  # never sees Dr. Ada's answers
    assert bo.state.position == 0 and bo.state.answers() == {}
    assert bo.viewer is not None and bo.viewer.verdict.value is None
    assert "2 answered by Dr. Ada" in again.header.value


def test_session_amendment_is_a_new_row_and_cannot_assess_has_no_score(study):
    view = _open(study, "Dr. Ada")
    case = view.state.current.case_id
    _answer(view, "disagree")
    _answer(view, "agree")  # changes their mind
    _answer(view, CANNOT_ASSESS)
    first, second, third = view.state.history(case)
    assert (first.verdict, second.verdict, third.verdict) == ("disagree", "agree", CANNOT_ASSESS)
    assert (first.amends, second.amends, third.amends) == (None, first.id, second.id)
    assert third.localisation is None and first.localisation == 3
    assert view.state.answers()[case].id == third.id  # the current answer is the last one
    assert "amendment of #" in view.viewer.status.value  # type: ignore[union-attr]


# --- agreement: values computed by hand ---------------------------------------------------------------------------

# Three readers, eight cases (a = agree, p = partly, d = disagree):
#   case  0 1 2 3 4 5 6 7
#   A     a p d a a p a d
#   B     a a d a p p a a
#   C     a p d p a p a d
TABLE = {
    "A": "a p d a a p a d",
    "B": "a a d a p p a a",
    "C": "a p d p a p a d",
}
NAMES = {"a": "agree", "p": "partly", "d": "disagree"}
# Cohen's kappa = (p_o - p_e) / (1 - p_e), p_e from the two readers' marginals (a, p, d counts out of 8):
#   A (4, 2, 2), B (5, 2, 1), C (3, 3, 2)
#   A-B: p_o = 5/8, p_e = (4*5 + 2*2 + 2*1)/64 = 26/64 -> (40 - 26)/(64 - 26) = 14/38
#   A-C: p_o = 7/8, p_e = (4*3 + 2*3 + 2*2)/64 = 22/64 -> (56 - 22)/(64 - 22) = 34/42
#   B-C: p_o = 4/8, p_e = (5*3 + 2*3 + 1*2)/64 = 23/64 -> (32 - 23)/(64 - 23) = 9/41
# Fleiss' kappa: per case P_i = (sum n_ij^2 - 3) / 6 -> 1, 1/3, 1, 1/3, 1/3, 1, 1, 1/3: mean 2/3;
#   category shares 12/24, 7/24, 5/24: P_e = (144 + 49 + 25)/576 = 218/576 -> (384 - 218)/(576 - 218) = 166/358
# Krippendorff's alpha (nominal): D_o = (1/24) * sum over the four split cases of 2*1*2/(3-1) = 8/24;
#   D_e = (24^2 - 218) / (24 * 23) = 358/552 -> alpha = 1 - (8/24) / (358/552) = 1 - 552/1074
HAND = {("A", "B"): 14 / 38, ("A", "C"): 34 / 42, ("B", "C"): 9 / 41}
FLEISS, ALPHA = 166 / 358, 1 - 552 / 1074


def _answers(table: dict[str, str]) -> list[Feedback]:
    rows, n = [], 0
    for reader, verdicts in table.items():
        for case, v in enumerate(verdicts.split()):
            n += 1
            rows.append(Feedback(case_id=f"c{case}", reviewer=reader, verdict=NAMES[v], checkpoint_sha256=SHA,
                                 input_sha256=SHA, method="hirescam", layer="l", localisation=1 + case % 5,
                                 id=n))  # type: ignore[arg-type]  # fmt: skip
    return rows


def test_session_agreement_equals_hand_computed_values():
    result = study_agreement(_answers(TABLE), n_resamples=300)
    for pair, kappa in HAND.items():
        est = result.pairs[pair]
        assert est.value == pytest.approx(kappa, abs=1e-9)
        assert est.low <= est.value <= est.high and est.n_cases == 8
    assert result.fleiss.value == pytest.approx(FLEISS, abs=1e-9)
    assert result.alpha.value == pytest.approx(ALPHA, abs=1e-9)
    assert result.fleiss.low <= result.fleiss.value <= result.fleiss.high
    assert result.observed[("A", "C")] == 7 / 8
    disagreed = [result.table.case_ids[c] for c in result.case_order()[:4]]
    assert disagreed == ["c1", "c3", "c4", "c7"]  # cases where readers differ come first


def test_session_agreement_with_an_amendment_counts_the_last_answer():
    rows = _answers({"A": "a a", "B": "a d"})
    amended = Feedback(case_id="c1", reviewer="B", verdict="agree", checkpoint_sha256=SHA, input_sha256=SHA,
                       method="hirescam", layer="l", id=99, amends=rows[-1].id)  # fmt: skip
    assert study_agreement([*rows, amended]).observed[("A", "B")] == 1.0


def test_session_agreement_degenerate_cases():
    one = study_agreement(_answers({"A": "a p d a"}))
    assert one.pairs == {} and not one.fleiss.defined and "two readers" in str(one.alpha)
    same = study_agreement(_answers({"A": "a a a", "B": "a a a"}))
    est = same.pairs[("A", "B")]
    assert math.isnan(est.value) and "every answer is 'agree'" in est.note
    assert same.observed[("A", "B")] == 1.0
    assert not same.fleiss.defined and not same.alpha.defined
    assert math.isnan(cohen_kappa([], []))
    partial = study_agreement(_answers({"A": "a p", "B": "a"}))  # B has not answered c1 yet
    assert partial.pairs[("A", "B")].n_cases == 1


# --- bad input ------------------------------------------------------------------------------------------------


def test_session_missing_case_file_is_skipped_shown_and_reported(study, tmp_path):
    view = _open(study, "Dr. Ada")
    assert len(view.state) == 4
    assert "1 case(s) skipped" in view.notes.value and "c9: image file missing" in view.notes.value
    text = view.state.export_report(tmp_path / "report.html").read_text()
    assert "Skipped cases (1)" in text and "c9: image file missing" in text
    assert "data:image/png;base64," in text  # precomputed maps are in the report


def test_worklist_folder_lists_what_load_reads(tmp_path):
    # the folder listing is medimg.io.load.list_images, shared with `medimg adapt`: an upper-case NIfTI ending
    # (which medimg.load reads) is a case, a hidden file and a non-image file are not
    from medimg.tasks.adapt import list_images

    for name in ("b.nii.gz", "A.NII.GZ", "c.nii", ".hidden.nii.gz", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "dicom_study").mkdir()
    worklist = read_worklist(tmp_path)
    assert [c.case_id for c in worklist.cases] == ["A", "b", "c", "dicom_study"]
    assert [p.name for p in list_images(tmp_path)] == ["A.NII.GZ", "b.nii.gz", "c.nii", "dicom_study"]


def test_session_case_without_map_is_reported_in_the_page_not_raised(study):
    (study["ex"] / "c2" / "explanation.json").unlink()  # an unfinished batch job, no checkpoint to compute it
    view = _open(study, "Dr. Ada")
    view.show(next(i for i, c in enumerate(view.state.cases) if c.case_id == "c2"))
    assert "c2 cannot be opened" in view.message.value and view.viewer is None
    assert any(s.case_id == "c2" for s in view.state.skipped) and "2 case(s) skipped" in view.notes.value


def test_session_bad_store_and_reader_are_clear_errors(study, tmp_path):
    with pytest.raises(ReviewError, match="enter your name first"):
        open_session(study["cases"], store=study["store"], reader="  ", precomputed=study["ex"])
    with pytest.raises(ReviewError, match="cannot open the review store"):
        open_session(study["cases"], store=tmp_path, reader="Dr. Ada", precomputed=study["ex"])  # a folder
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ReviewError, match="cannot open the review store"):
        FeedbackStore(tmp_path / "junk.sqlite")
    future = tmp_path / "future.sqlite"
    con = sqlite3.connect(future)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(ReviewError, match="newer than this medimg"):
        open_session(study["cases"], store=future, reader="Dr. Ada", precomputed=study["ex"])
    with pytest.raises(ConfigError, match="case list not found"):
        open_session(tmp_path / "nope.csv", store=study["store"], reader="Dr. Ada", precomputed=study["ex"])


def test_session_page_shows_errors_as_one_line(study, tmp_path):
    future = tmp_path / "future.sqlite"
    con = sqlite3.connect(future)
    con.execute("PRAGMA user_version = 99")
    con.close()
    env = {ENV_CASES: str(study["cases"]), ENV_EXPLANATIONS: str(study["ex"]), ENV_STORE: str(future)}
    page = reading_app(env)
    name, start = page.children[1].children
    message = page.children[2]
    start.click()
    assert "enter your name first" in message.value
    name.value = "Dr. Ada"
    start.click()
    assert "newer than this medimg" in message.value and not start.disabled
    unset = reading_app({})  # no cases named and no demo to fall back on
    unset.children[1].children[0].value = "Dr. Ada"
    unset.children[1].children[1].click()
    assert "no cases to read: set MEDIMG_REVIEW_CASES" in unset.children[2].value
    page = reading_app({**env, ENV_STORE: str(study["store"])})
    page.children[1].children[0].value = "Dr. Ada"
    page.children[1].children[1].click()
    assert "Reading session: Dr. Ada" in page.children[0].value
    nav = page.children[1].children[0]
    assert "case 1 of 4" in nav.children[3].value


def test_session_store_migrates_schema_1_and_keeps_rows(tmp_path):
    path = tmp_path / "v1.sqlite"
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, created_utc TEXT NOT NULL, case_id TEXT NOT NULL,"
        " reviewer TEXT NOT NULL, verdict TEXT NOT NULL CHECK (verdict IN ('agree', 'partly', 'disagree')),"
        " localisation INTEGER, comment TEXT NOT NULL DEFAULT '', checkpoint_sha256 TEXT NOT NULL,"
        " input_sha256 TEXT NOT NULL, method TEXT NOT NULL, layer TEXT NOT NULL, label INTEGER NOT NULL,"
        " sanity_rho REAL); PRAGMA user_version = 1;"
        f"INSERT INTO feedback VALUES (1, 't', 'c0', 'Dr. Old', 'agree', 4, '', '{SHA}', '{SHA}', 'm', 'l', 1, NULL);"
    )
    con.close()
    store = FeedbackStore(path)
    assert store.schema_version == SCHEMA_VERSION == 2
    (old,) = store.all()
    assert (old.reviewer, old.verdict, old.amends) == ("Dr. Old", "agree", None)
    store.add(Feedback(case_id="c0", reviewer="Dr. Old", verdict=CANNOT_ASSESS, checkpoint_sha256=SHA,
                       input_sha256=SHA, method="m", layer="l", amends=old.id))  # fmt: skip
    assert [a.verdict for a in FeedbackStore(path).all()] == ["agree", CANNOT_ASSESS]


# --- the batch job with a real model --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from medimg.data.phantoms import make_phantom_msd
    from medimg.tasks.lightning_cli import run_cli

    root = tmp_path_factory.mktemp("batch")
    data = make_phantom_msd(root / "Task", n_cases=4, n_test=2, seed=5)
    run_cli(["fit", *SMALL_FIT, "--data.dataset_dir", str(data), "--trainer.max_epochs", "1",
             "--data.epoch_length", "4", "--trainer.default_root_dir", str(root / "run")])  # fmt: skip
    return {"ckpt": root / "run" / "checkpoints" / "last.ckpt", "data": data, "root": root}


def test_session_batch_explain_is_resumable_and_feeds_the_session(trained, capsys):
    ckpt, root = trained["ckpt"], trained["root"]
    worklist = read_worklist(trained["data"] / "dataset.json")
    first, _ = (c.case_id for c in worklist.cases)
    out = root / "explanations"
    done = explain_cases(ckpt, [(first, worklist.cases[0].image)], out, progress=False)  # a job cut short
    assert done.written == [first]
    stamp = os.stat(out / first / "explanation.json").st_mtime_ns
    code = main(["explain", "--ckpt", str(ckpt), "--cases", str(trained["data"] / "dataset.json"),
                 "--out-dir", str(out)])  # fmt: skip
    assert code == 0
    assert "1 explained, 1 already done, 0 failed" in capsys.readouterr().out
    assert os.stat(out / first / "explanation.json").st_mtime_ns == stamp  # not recomputed
    state = open_session(worklist, ckpt, store=root / "r.sqlite", reader="Dr. Ada", precomputed=out)
    for case in state.cases:
        ex = state.source.ready(case)  # no computing needed
        assert ex is not None and ex.checkpoint_sha256 == state.source.checkpoint_sha256
        assert ex.heatmap.shape == ex.image.shape and ex.sanity is not None
    assert state.source._model is None  # precomputed maps: the network was never built, only the file hashed
    assert state.reference() is not None  # the held-out label from labelsTs/


def test_session_without_precomputed_computes_once_and_caches(trained):
    worklist = read_worklist(trained["data"] / "dataset.json")
    state = open_session(worklist, trained["ckpt"], store=trained["root"] / "r2.sqlite", reader="Dr. Bo")
    assert state.source.ready(state.current) is None
    ex = state.explanation()
    assert state.explanation() is ex and state.source.ready(state.current) is ex
    reference = precomputed(trained["root"] / "explanations", state.current.case_id)
    if reference is not None:  # the same map as the batch job's
        np.testing.assert_allclose(ex.heatmap.array, reference.heatmap.array, atol=1e-5)


def test_session_cli_bad_case_list_is_one_line(tmp_path, capsys, trained):
    code = main(["explain", "--ckpt", str(trained["ckpt"]), "--cases", str(tmp_path / "none.csv"),
                 "--out-dir", str(tmp_path / "o")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "case list not found" in err and "Traceback" not in err and err.count("\n") == 1
    code = main(["explain", "--ckpt", str(trained["ckpt"]), "--cases", str(tmp_path), "--out", "x.nii.gz"])
    assert code == 2 and "--cases and --out-dir" in capsys.readouterr().err
