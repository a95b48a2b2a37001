"""The round journal: every finished round is on disk as it ends, and reads back as the results."""
from __future__ import annotations

import pytest

from colearn import Experiment
from colearn.journal import JOURNAL_NAME, RoundJournal, read_journal
from tests.learners import PlusOneLearner


def test_the_journal_holds_every_round_as_it_ends_and_reads_back_equal(tmp_path):
    seen = []

    def check_on_disk(record):
        seen.append(len(read_journal(tmp_path).rounds))

    journal = RoundJournal(tmp_path)
    results = Experiment([PlusOneLearner() for _ in range(3)], hooks=[journal, check_on_disk]).run(4)
    assert seen == [1, 2, 3, 4]
    assert read_journal(tmp_path / JOURNAL_NAME).to_json(include_timings=False) == \
        results.to_json(include_timings=False)


def test_a_line_cut_off_by_a_crash_is_ignored_and_a_bad_line_is_named(tmp_path):
    Experiment([PlusOneLearner() for _ in range(3)], hooks=[RoundJournal(tmp_path)]).run(2)
    path = tmp_path / JOURNAL_NAME
    text = path.read_text()
    path.write_text(text + '{"kind": "round", "rec')
    assert len(read_journal(path).rounds) == 2
    path.write_text(text + "not json\n")
    with pytest.raises(ValueError, match="line 4"):
        read_journal(path)
