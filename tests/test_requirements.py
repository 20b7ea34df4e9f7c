"""The pins a fresh install uses agree with each other (a disagreement fails only at install time)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def pins(name):
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        m = PIN.match(line.strip())
        if m:
            found[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return found


def test_constraints_pin_every_requirement_at_its_version():
    constraints = pins("constraints.txt")
    for name in ("requirements.txt", "requirements-nodeps.txt", "requirements-dev.txt",
                 "requirements-ray.txt"):
        for package, version in pins(name).items():
            assert constraints.get(package) == version, (
                f"{name} pins {package}=={version}, constraints.txt has "
                f"{constraints.get(package)}: regenerate constraints.txt (see its header)")


def test_every_line_of_the_locks_is_a_pin_or_a_comment():
    for name in ("constraints.txt", "requirements-ls.txt"):
        for line in (ROOT / name).read_text().splitlines():
            assert not line.strip() or line.startswith("#") or PIN.match(line), (name, line)


def test_the_tests_label_studio_is_the_one_the_notes_checked():
    assert pins("requirements-ls.txt")["label-studio"] == "1.23.2"
