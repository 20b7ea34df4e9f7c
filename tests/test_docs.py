"""The documents stay true to the code: every setting in the README, every module in the
architecture notes."""

from pathlib import Path

from dbsal_backend.settings import Settings, _variable

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_lists_every_setting():
    readme = (ROOT / "README.md").read_text()
    missing = [_variable(Settings, name) for name in Settings.model_fields
               if f"`{_variable(Settings, name)}`" not in readme]
    assert not missing, f"README.md does not describe {missing}"
    assert "make serve" in readme and "make test" in readme


def test_the_architecture_notes_list_every_module():
    notes = (ROOT / "docs" / "architecture.md").read_text()
    modules = sorted(p.stem for p in (ROOT / "dbsal_backend").glob("*.py") if p.stem != "__init__")
    missing = [m for m in modules if f"`{m}`" not in notes]
    assert not missing, f"docs/architecture.md does not describe {missing}"
