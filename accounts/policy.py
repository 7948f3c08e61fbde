"""Who is calling, and who may call what: roles grouped into the audiences a route declares.

Every route declares one policy (app/deps.py `allow(...)`); tests/app/test_role_matrix.py walks the app's route table
and fails for a route that declares none, then checks every role against every route.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.tables import Role

ANONYMOUS = "anonymous"
# Audiences: what a route declares. PUBLIC admits anonymous callers too.
PUBLIC = frozenset({ANONYMOUS, *Role})
SIGNED_IN = frozenset(Role)
STAFF = frozenset({Role.staff, Role.admin})
ADMIN = frozenset({Role.admin})
NEED_PUBLISHERS = frozenset({Role.enterprise, Role.staff, Role.admin})  # 企业 publish needs
ACHIEVEMENT_PUBLISHERS = frozenset({Role.university, Role.staff, Role.admin})  # 高校院所 publish achievements
# Only experts grade (评审专家): staff open, watch and adjudicate rounds, but a grade is an expert's judgement.
EXPERTS = frozenset({Role.expert})
# 揭榜 calls are posted by the owners of needs (enterprises) and achievements (universities), or by staff.
CALL_POSTERS = NEED_PUBLISHERS | ACHIEVEMENT_PUBLISHERS
# Organisations' users receive pushed leads (定向推送) and subscribe to them; staff do so on their behalf.
LEAD_RECIPIENTS = frozenset({Role.enterprise, Role.university, Role.agency, Role.staff, Role.admin})


@dataclass(frozen=True)
class Principal:
    """The caller: a user (role, organisation), the bootstrap admin token, or anonymous (role None)."""

    role: Role | None = None
    user_id: int | None = None
    organisation_id: int | None = None
    username: str | None = None
    label: str | None = None  # how the audit log names a caller that is no user ("cli", "system")

    @property
    def is_staff(self) -> bool:
        """Staff and admin see and do everything (but only admin manages users)."""
        return self.role in STAFF

    @property
    def audience(self) -> str:
        """This caller's name in a policy: its role, or "anonymous"."""
        return str(self.role) if self.role is not None else ANONYMOUS

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        if self.username is not None:
            return f"user:{self.username}"
        if self.label is not None:
            return self.label
        return "admin-token" if self.role == Role.admin else ANONYMOUS

    def owns(self, owner_id: int | None) -> bool:
        """Whether a row owned by this organisation is this caller's own."""
        return owner_id is not None and owner_id == self.organisation_id


BOOTSTRAP_ADMIN = Principal(role=Role.admin)
# In-process callers with full rights: the CLI, ingest jobs, tests of the services.
SYSTEM = Principal(role=Role.admin, label="system")
CLI = Principal(role=Role.admin, label="cli")
