"""The project as a whole: migrations complete and runnable, production settings pass check --deploy."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
# TAX-1: a production seller is configured (the demo's would print on every invoice: a deploy warning).
SELLER_ENV = {"SELLER_NAME": "Example Analytics GmbH", "SELLER_ADDRESS": "Hauptstrasse 1\n10115 Berlin",
              "SELLER_COUNTRY": "DE", "SELLER_TAX_ID": "DE136695976"}


@pytest.mark.django_db
def test_models_and_migrations_agree():
    """Migrations: every model change has its migration (makemigrations --check finds nothing to write)."""
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_check_deploy_is_clean_with_production_settings():
    """Deploy: manage.py check --deploy passes with no warning under the production settings."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.production", "DEBUG": "false",
           "SECRET_KEY": secrets.token_urlsafe(60), "ALLOWED_HOSTS": "billing.example.com",
           "SITE_URL": "https://billing.example.com", **SELLER_ENV}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the browser tests' Playwright fixtures
    done = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_production_settings_refuse_a_missing_secret_key():
    """Deploy: the production settings refuse to start without SECRET_KEY, and say so."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.production", "SECRET_KEY": ""}
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "SECRET_KEY must be set" in done.stderr


@pytest.mark.postgres_only
@pytest.mark.slow
@pytest.mark.django_db
def test_all_migrations_apply_to_an_empty_database_and_create_the_staff_groups():
    """Tests run with --nomigrations for speed; this one migrates a scratch database for real."""
    import psycopg

    db = connection.settings_dict
    name = f"{db['NAME']}_migrate"
    admin = f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local",
               "DATABASE_URL": admin.rsplit("/", 1)[0] + f"/{name}"}
        done = subprocess.run([sys.executable, "manage.py", "migrate", "--no-input"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            groups = {row[0] for row in conn.execute("SELECT name FROM auth_group")}
        assert {"Support", "Billing managers"} <= groups
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
