"""Add sweeps, their trials, and the job row's stop request

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("experiment", sa.String(length=200), nullable=False),
        sa.Column(
            "status",
            sa.String(length=20),
            nullable=False,
            comment="running, succeeded, failed, cancelled",
        ),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("objective_metric", sa.String(length=100), nullable=False),
        sa.Column("objective_mode", sa.String(length=3), nullable=False),
        sa.Column("max_parallel", sa.Integer(), nullable=False),
        sa.Column("n_trials", sa.Integer(), nullable=False),
        sa.Column("stop_message", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_sweeps_tenant_idempotency_key"),
    )
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.create_index("ix_sweeps_tenant_created", ["tenant", "created_at", "id"])
        batch_op.create_index("ix_sweeps_status", ["status"])

    op.create_table(
        "sweep_trials",
        sa.Column("sweep_id", sa.String(length=64), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("parameters", JSON, nullable=False),
        sa.Column("spec", JSON, nullable=False, comment="The trial's validated job spec."),
        sa.Column("n_parameters", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column(
            "checked_epoch",
            sa.Integer(),
            nullable=False,
            comment="The last epoch the early-stopping rule judged this trial at.",
        ),
        sa.ForeignKeyConstraint(["sweep_id"], ["sweeps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sweep_id", "index"),
    )
    with op.batch_alter_table("sweep_trials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sweep_trials_job_id"), ["job_id"], unique=False)

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "stop_request",
                sa.String(length=20),
                nullable=True,
                comment="A stop reason another process asks the worker to end with, "
                "e.g. early_stopped.",
            )
        )
        batch_op.add_column(sa.Column("stop_request_message", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("stop_request_message")
        batch_op.drop_column("stop_request")
    with op.batch_alter_table("sweep_trials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sweep_trials_job_id"))
    op.drop_table("sweep_trials")
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.drop_index("ix_sweeps_status")
        batch_op.drop_index("ix_sweeps_tenant_created")
    op.drop_table("sweeps")
