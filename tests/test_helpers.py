"""The test helpers' own guarantees (what CI depends on)."""

from lsserver import command_line_secret


def test_command_line_secrets_never_look_like_options():
    # token_urlsafe alone starts with "-" about one time in 64: 4,000 draws all but surely
    # include such a start, so this fails if the guard goes.
    secrets = [command_line_secret() for _ in range(4000)]
    assert not [s for s in secrets if s.startswith("-")]
    assert len(set(secrets)) == len(secrets)
