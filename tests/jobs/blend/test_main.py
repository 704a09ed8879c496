"""When the blend may skip joining the CF and content candidates with the scored users."""

from __future__ import annotations

import pytest

from jobs.blend.main import candidates_only_of_scored

TAG = "users:/lake/rescored_users@v3"


@pytest.mark.parametrize(
    ("rescoring", "all_users", "scope", "written", "want"),
    [
        (False, False, None, [None, None], True),  # a full run scores every user with candidates
        (False, True, None, [None, None], False),  # --all-users: a stale candidate user may have no events
        (True, False, TAG, [TAG, TAG], True),  # both tables written for this run's users
        (True, False, TAG, [TAG], True),  # only one candidate table exists
        (True, False, TAG, [TAG, None], False),  # content written for every user (e.g. --skip content)
        (True, False, TAG, [None, None], False),
        (True, False, None, [None, None], False),  # given users without a scope tag
    ],
)
def test_candidates_only_of_scored(rescoring, all_users, scope, written, want):
    assert candidates_only_of_scored(rescoring=rescoring, all_users=all_users, scope=scope, written=written) is want
