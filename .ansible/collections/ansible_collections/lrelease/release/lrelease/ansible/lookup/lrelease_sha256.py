# Copyright lrelease contributors
# Apache-2.0
"""lrelease_sha256: the sha256 of a file on the controller, in-process (deploy.yml's controller check)."""

from __future__ import annotations

import hashlib
import os

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: lrelease_sha256
short_description: The sha256 of a file on the controller (empty when there is no such file)
description:
  - "Reads each path given (a file on the controller) and answers its sha256 as 64 lowercase hex
    digits, or an empty string when the path is not a regular file. In the Ansible process itself:
    no module is started for it. deploy.yml checks the artifact with it before any host changes."
options:
  _terms:
    description: Paths of files on the controller.
    type: list
    elements: path
    required: true
"""

EXAMPLES = r"""
- name: Refuse an artifact that does not match its sha256
  ansible.builtin.assert:
    that: lookup('lrelease.release.lrelease_sha256', lrelease_artifact) == lrelease_artifact_sha256 | lower
"""

RETURN = r"""
_raw:
  description: One sha256 (hex) per path, or an empty string for a path that is not a regular file.
  type: list
  elements: str
"""

CHUNK = 1 << 20


def sha256_of(path: str) -> str:
    if not os.path.isfile(path):
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        try:
            return [sha256_of(str(term)) for term in terms]
        except OSError as exc:
            raise AnsibleError(f"lrelease_sha256: cannot read {exc.filename}: {exc.strerror}") from None
