"""A web config file with one basic-auth user, as tests of the HTTP server write it."""

from pathlib import Path

import bcrypt


def basic_auth_config(directory: Path, user: str, password: bytes) -> str:
    """Path of `web.yml` in `directory` holding `user` with `password` hashed at bcrypt cost 4
    (the cheapest: the tests check behaviour, not the cost)."""
    hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds=4)).decode()
    path = Path(directory) / "web.yml"
    path.write_text(f"basic_auth_users:\n  {user}: '{hashed}'\n")
    return str(path)
