"""Hypothesis strategies shared by the property tests, in one place.

Each block below belongs to one area of the library; property tests import from here.
"""

from __future__ import annotations

from hypothesis import strategies as st

# --- text ------------------------------------------------------------------------------------

#: Arbitrary Unicode text, including control characters and surrogate-free exotic code points.
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)
