"""A keyring backend for tests: entries in a JSON file named by ``PERPHEDGE_TEST_KEYRING_FILE``
(``{"service": {"key": ..., "secret": ...}}``), so a subprocess reads what the test stored. Select it with
``PYTHON_KEYRING_BACKEND=tests.keyring_backend.FileKeyring``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class FileKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def _path(self) -> Path:
        return Path(os.environ["PERPHEDGE_TEST_KEYRING_FILE"])

    def _load(self) -> dict[str, dict[str, str]]:
        p = self._path()
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(service, {}).get(username)

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data.setdefault(service, {})[username] = password
        self._path().write_text(json.dumps(data), encoding="utf-8")

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if username not in data.get(service, {}):
            raise PasswordDeleteError(username)
        del data[service][username]
        self._path().write_text(json.dumps(data), encoding="utf-8")
