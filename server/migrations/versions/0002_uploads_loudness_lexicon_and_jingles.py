"""uploads, loudness, lexicon and jingles

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 15:36:56.145357
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.models

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('lexicon_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('term', sa.String(length=100), nullable=False),
    sa.Column('spoken', sa.String(length=300), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=False),
    sa.Column('created_at', server.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('term')
    )
    with op.batch_alter_table('announcements', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False, server_default='tts'))
        batch_op.add_column(sa.Column('progress', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('upload_name', sa.String(length=255), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('upload_path', sa.String(length=500), nullable=True))

    with op.batch_alter_table('areas', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chime_sha256', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('intro_sha256', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('outro_sha256', sa.String(length=64), nullable=True))
        batch_op.create_foreign_key('fk_areas_chime_sha256', 'audio_assets', ['chime_sha256'], ['sha256'])
        batch_op.create_foreign_key('fk_areas_outro_sha256', 'audio_assets', ['outro_sha256'], ['sha256'])
        batch_op.create_foreign_key('fk_areas_intro_sha256', 'audio_assets', ['intro_sha256'], ['sha256'])

    with op.batch_alter_table('audio_assets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lufs', sa.Double(), nullable=True))
        batch_op.add_column(sa.Column('true_peak_db', sa.Double(), nullable=True))

    # Existing rows keep their meaning: their audio work is done.
    op.execute("UPDATE announcements SET progress = 100 WHERE audio_status = 'ready'")


def downgrade() -> None:
    with op.batch_alter_table('audio_assets', schema=None) as batch_op:
        batch_op.drop_column('true_peak_db')
        batch_op.drop_column('lufs')

    with op.batch_alter_table('areas', schema=None) as batch_op:
        for column in ("chime", "intro", "outro"):
            batch_op.drop_constraint(f"fk_areas_{column}_sha256", type_="foreignkey")
        batch_op.drop_column('outro_sha256')
        batch_op.drop_column('intro_sha256')
        batch_op.drop_column('chime_sha256')

    with op.batch_alter_table('announcements', schema=None) as batch_op:
        batch_op.drop_column('upload_path')
        batch_op.drop_column('upload_name')
        batch_op.drop_column('progress')
        batch_op.drop_column('kind')

    op.drop_table('lexicon_entries')
