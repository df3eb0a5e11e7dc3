"""The README: the two commands first, figures that exist, and a validation table that is current."""

from __future__ import annotations

import re

from reports import readme_table
from reports.spec import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_the_two_commands_come_first():
    first_section = README.split("## A quick tour", 1)[0]
    assert "make report" in first_section and "make test" in first_section
    assert README.index("make report") < README.index("import gpus, moe, sim")


def test_readme_images_exist_and_are_png():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert images, "the README shows at least one figure made by the project"
    for image in images:
        data = (REPO_ROOT / image).read_bytes()
        assert data.startswith(b"\x89PNG"), image


def test_blocks_match_tolerates_last_digits_only():
    assert readme_table.blocks_match("| a | 1,000 | +1.0 % |", "| a | 1,004 | +1.1 % |")
    assert not readme_table.blocks_match("| a | 1,000 | +1.0 % |", "| a | 1,100 | +1.0 % |")
    assert not readme_table.blocks_match("| a | 1,000 | yes |", "| a | 1,000 | **no** |")


def test_readme_validation_table_is_up_to_date():
    written = readme_table.current_block(README)
    assert written is not None, "README.md lacks the validation-table markers"
    fresh = readme_table.render()
    assert readme_table.blocks_match(written, fresh), (
        "README.md's validation table is out of date: run python -m reports.readme_table --write"
    )


def test_readme_api_tour_runs():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
    assert blocks, "the README has a python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # the tour must run as printed
    assert namespace["t"].step_time_s > 0 and namespace["s"].usd_per_million_output_tokens > 0
