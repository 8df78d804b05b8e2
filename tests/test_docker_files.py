"""docker/: the compose file runs every process against PostgreSQL and Redis, configured by
the same environment variables as a bare run. (No container engine in CI: this checks the
files' contract; the commands themselves are the ones the tests and `make run` use.)"""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())


def test_compose_runs_every_process():
    services = COMPOSE["services"]
    assert {"postgres", "redis", "migrate", "portal", "gateway", "worker", "beat"} <= set(services)
    commands = {name: " ".join(services[name]["command"]) for name in ("portal", "gateway", "worker", "beat")}
    assert "portal.wsgi:application" in commands["portal"]
    assert "gateway/gunicorn.conf.py gateway.app:app" in commands["gateway"]
    assert commands["worker"].startswith("celery -A portal worker")
    assert commands["beat"].startswith("celery -A portal beat")


def test_every_portico_process_reads_the_same_database_and_redis():
    services = COMPOSE["services"]
    for name in ("migrate", "portal", "gateway", "worker", "beat"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")  # never a default secret


def test_app_processes_wait_for_their_dependencies_and_the_migration():
    for name in ("portal", "gateway", "worker", "beat"):
        depends = COMPOSE["services"][name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_the_image_holds_every_package_the_commands_name():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    for package in ("portal", "gateway", "llm", "analytics", "templates"):
        assert f"COPY {package} ./{package}" in dockerfile
        assert (ROOT / package).is_dir()
    assert (ROOT / "gateway" / "gunicorn.conf.py").exists()
