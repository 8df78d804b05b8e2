"""Django settings. Everything comes from the environment, with embedded defaults.

Defaults need nothing installed: SQLite under ``var/`` and the embedded Redis that the run
command starts on ``127.0.0.1:6390``. Production sets DATABASE_URL, REDIS_URL and SECRET_KEY.
"""

import os
from collections.abc import Callable
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PORTICO_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _private_key_file(path: Path, make: Callable[[], str]) -> str:
    """The key kept in ``path``, made by ``make()`` the first time. The file is created
    private and whole: written to a new file opened O_CREAT|O_EXCL with mode 0600 (never
    through a planted link, never readable by others, not even for a moment), then linked
    into place, so concurrent first starts (portal, gateway workers, celery) all read the
    first complete key. Anything but a regular file at ``path`` is refused."""
    if not path.is_symlink() and not path.exists():
        import contextlib
        import secrets

        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            with os.fdopen(fd, "w") as file:
                file.write(make())
                file.flush()
                os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):  # another process got there first: keep theirs
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    if path.is_symlink() or not path.is_file():
        raise ImproperlyConfigured(
            f"{path} must be a regular file holding the key (or set the key in the environment)."
        )
    return path.read_text().strip()


def _secret_key() -> str:
    """SECRET_KEY from the environment. Without it (local runs) one generated once and kept
    in var/secret_key; the portal's server refuses to start on that key unless DEBUG is on
    (``portal.startup``), and the image build never writes one (docker/Dockerfile)."""
    if key := os.environ.get("SECRET_KEY"):
        return key
    import secrets

    return _private_key_file(VAR_DIR / "secret_key", lambda: secrets.token_urlsafe(50))


SECRET_KEY = _secret_key()
SECRET_KEY_FROM_ENVIRONMENT = bool(os.environ.get("SECRET_KEY"))


def _encryption_keys() -> list[str]:
    """Fernet keys for provider credentials (``llm.crypto``): PORTICO_ENCRYPTION_KEY, several
    comma-separated for rotation (the first encrypts, all decrypt). Without it (local runs)
    one is generated once under var/, created atomically so concurrent first starts (portal,
    gateway workers, celery) all read the same complete key."""
    if keys := env_list("PORTICO_ENCRYPTION_KEY", ""):
        return keys
    path = VAR_DIR / "encryption_key"
    if not path.exists():
        import base64
        import contextlib
        import secrets
        import tempfile

        fd, temporary = tempfile.mkstemp(dir=VAR_DIR, prefix=".encryption_key.")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(base64.urlsafe_b64encode(secrets.token_bytes(32)))
                file.flush()
                os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):  # another process got there first: keep theirs
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    return [path.read_text().strip()]


PORTICO_ENCRYPTION_KEYS = _encryption_keys()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "http://localhost:8000,http://127.0.0.1:8000")

# HTTPS. In production the portal is served over HTTPS (PORTICO_HTTPS, on by default when
# PORTICO_PORTAL_URL is https://): HSTS, secure cookies and a redirect from http, which
# `manage.py check --deploy` asks for. Behind a proxy that terminates TLS, set
# SECURE_PROXY_SSL_HEADER to the header it sets, e.g. "HTTP_X_FORWARDED_PROTO,https" (only
# if the proxy overwrites that header on every request), or the redirect never ends.
PORTICO_HTTPS = env_bool("PORTICO_HTTPS", os.environ.get("PORTICO_PORTAL_URL", "").startswith("https://"))
if _proxy_header := os.environ.get("SECURE_PROXY_SSL_HEADER", "").strip():
    _header, _comma, _value = _proxy_header.partition(",")
    if not (_header.strip().startswith("HTTP_") and _value.strip()):
        raise ImproperlyConfigured(
            'SECURE_PROXY_SSL_HEADER reads "HTTP_<HEADER>,<value>", e.g. "HTTP_X_FORWARDED_PROTO,https".'
        )
    SECURE_PROXY_SSL_HEADER = (_header.strip(), _value.strip())
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PORTICO_HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", PORTICO_HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", PORTICO_HTTPS)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 86400) if PORTICO_HTTPS else "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
# Preloading is a promise to browser vendors that outlives this deployment: an operator's
# choice (security.W021 is silenced below), never a default.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "portal",
    "analytics",
    "llm",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns django-ratelimit's refusals into RATELIMIT_VIEW's 429 page or JSON.
    "django_ratelimit.middleware.RatelimitMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.views.context.tenant_context",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portico.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Portal, worker and gateway loaders share one SQLite file: wait for locks, don't fail.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    # A file, not memory, so the gateway and workers that tests start see the same data.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6390/0")

CACHES = {
    "default": {
        # While Redis is away each process counts on its own (portal.cache): limits hold, never a 500.
        "BACKEND": "portal.cache.FailOverRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "portico:cache",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

if env_bool("PORTICO_FAST_PASSWORD_HASHING", False):
    # Tests only (set by tests/plugins/redis_server.py): PBKDF2's million rounds would dominate the suite.
    PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "staticfiles"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Portico <portico@localhost>")

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.rest.authentication.AccessTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "portal.rest.exceptions.handle",
    # JSON in, JSON out: one request format to document, validate and support.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_PAGINATION_CLASS": "portal.rest.pagination.Pagination",
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": "600/min"},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Portico management API",
    "DESCRIPTION": (
        "The portal's operations for developers (catalog, applications, subscriptions, API keys) and for "
        "administrators (subscription decisions, version lifecycle). Authenticate with a personal access "
        "token, `Authorization: Token pat_...`, from /account/tokens/ or `manage.py create_access_token`. "
        'Errors read `{"error": {"code": ..., "message": ...}}`. Guide: docs/rest-api.md.'
    ),
    "VERSION": "1.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    # Several resources have a "state"; name each choice set after what it is.
    "ENUM_NAME_OVERRIDES": {
        "SubscriptionStateEnum": "portal.models.SubscriptionState",
        "VersionStateEnum": "portal.models.VersionState",
        "ProviderKindEnum": "llm.models.ProviderKind",
        "ProviderKeyStateEnum": "llm.models.KeyState",
        "ModelCapabilityEnum": "llm.models.Capability",
        "PiiModeEnum": "llm.models.PiiMode",
        "PiiDetectorEnum": "llm.models.PiiDetector",
        "BudgetScopeEnum": "llm.models.BudgetScope",
        "BudgetPeriodEnum": "llm.models.BudgetPeriod",
    },
    # Tags and operation ids from the resource (keys, subscriptions, ...), not from "v1".
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "SERVE_INCLUDE_SCHEMA": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "portal.rest.schema.add_error_responses",
    ],
}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "ingest-call-logs": {"task": "analytics.ingest_call_logs", "schedule": 5.0},
    # Rollups (analytics/rollups.py): each tier folds in what changed below it since its last run.
    "roll-up-minutes": {"task": "analytics.roll_up_minutes", "schedule": 60.0},
    "roll-up-hours": {"task": "analytics.roll_up_hours", "schedule": 300.0},
    "roll-up-days": {"task": "analytics.roll_up_days", "schedule": 3600.0},
    "enforce-retention": {"task": "analytics.enforce_retention", "schedule": crontab(hour=3, minute=7)},
    # Trend reports (analytics/reports.py) for the UTC day and the ISO week just ended.
    "daily-trend-reports": {
        "task": "analytics.send_trend_reports",
        "schedule": crontab(hour=0, minute=20),
        "kwargs": {"kind": "daily"},
    },
    "weekly-trend-reports": {
        "task": "analytics.send_trend_reports",
        "schedule": crontab(day_of_week=1, hour=0, minute=40),
        "kwargs": {"kind": "weekly"},
    },
    "send-budget-alerts": {"task": "llm.send_budget_alerts", "schedule": 60.0},
    # Provider key states the gateway learned (llm/key_states.py), into the admin's view.
    "sync-llm-key-states": {"task": "llm.sync_key_states", "schedule": 15.0},
    # Alerts (analytics/alerts.py, analytics/webhooks.py): judged each minute from the minute
    # rollups; webhooks due (first tries and retries with backoff) sent every 30 s.
    "evaluate-alerts": {"task": "analytics.evaluate_alerts", "schedule": 60.0},
    "deliver-webhooks": {"task": "analytics.deliver_webhooks", "schedule": 30.0},
}

RATELIMIT_USE_CACHE = "default"
RATELIMIT_VIEW = "portal.views.errors.ratelimited"
# Django's own Redis backend is atomic (INCR) and shared, which is all django-ratelimit needs;
# its check only knows django-redis by name.
SILENCED_SYSTEM_CHECKS = [
    "django_ratelimit.W001",
    "security.W021",  # HSTS preload: see SECURE_HSTS_PRELOAD
]
RATELIMIT_FAIL_OPEN = True  # a count the cache could not give at all (it always can: portal.cache falls back)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Invitation and password-reset links are secrets: their tokens never reach a log line.
    "filters": {"redact_tokens": {"()": "portal.logredact.RedactTokens"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_tokens"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # Django's own handlers (a console one under DEBUG, runserver's request log) would print
    # paths unfiltered: its loggers write through ours instead.
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# --- Portico product settings ------------------------------------------------------------

# Email the tenant's owners when an admin approves or rejects a subscription request.
PORTICO_NOTIFY_SUBSCRIPTION_DECISIONS = env_bool("PORTICO_NOTIFY_SUBSCRIPTION_DECISIONS", True)
# Email the tenant's owners when an LLM spend budget reaches 80 % and 100 % (once per period each).
PORTICO_NOTIFY_BUDGET_ALERTS = env_bool("PORTICO_NOTIFY_BUDGET_ALERTS", True)
# E-mail each tenant's owners its daily and weekly trend report (a link and the headline figures).
PORTICO_NOTIFY_TREND_REPORTS = env_bool("PORTICO_NOTIFY_TREND_REPORTS", True)
# E-mail alert firings and resolutions (rules that ask for e-mail) to the tenant's owners, or staff.
PORTICO_NOTIFY_ALERTS = env_bool("PORTICO_NOTIFY_ALERTS", True)
# An alert judges the complete minutes ending this long ago: ingest and the minute rollup
# (each on beat) need that long to count a minute whole.
PORTICO_ALERT_DELAY_SECONDS = int(os.environ.get("PORTICO_ALERT_DELAY_SECONDS", "120"))
# Networks (CIDRs) alert webhooks may be sent to although they are not public (loopback,
# private, link-local addresses are refused otherwise), e.g. "10.0.0.0/8" for an internal receiver.
PORTICO_WEBHOOK_ALLOWED_NETWORKS = env_list("PORTICO_WEBHOOK_ALLOWED_NETWORKS", "")
# E-mail the API's owning team (owners and admins) and staff when a subscription request
# waits for approval.
PORTICO_NOTIFY_SUBSCRIPTION_REQUESTS = env_bool("PORTICO_NOTIFY_SUBSCRIPTION_REQUESTS", True)
# Retention tiers in days (analytics/retention.py, daily); 0 keeps that tier forever.
PORTICO_RETENTION_CALLS_DAYS = int(os.environ.get("PORTICO_RETENTION_CALLS_DAYS", "14"))
PORTICO_RETENTION_MINUTE_ROLLUPS_DAYS = int(os.environ.get("PORTICO_RETENTION_MINUTE_ROLLUPS_DAYS", "7"))
PORTICO_RETENTION_HOUR_ROLLUPS_DAYS = int(os.environ.get("PORTICO_RETENTION_HOUR_ROLLUPS_DAYS", "90"))
PORTICO_RETENTION_DAY_ROLLUPS_DAYS = int(os.environ.get("PORTICO_RETENTION_DAY_ROLLUPS_DAYS", "0"))
# How long a rotated key's old secret keeps working, so clients can roll over without downtime.
PORTICO_KEY_ROTATION_GRACE_SECONDS = int(os.environ.get("PORTICO_KEY_ROTATION_GRACE_SECONDS", "86400"))
# New accounts wait for an administrator to activate them (and cannot log in until then).
PORTICO_SIGNUP_REQUIRES_APPROVAL = env_bool("PORTICO_SIGNUP_REQUIRES_APPROVAL", False)
# Public address of the gateway, shown in docs and used by the try-it console.
PORTICO_GATEWAY_URL = os.environ.get("PORTICO_GATEWAY_URL", "http://127.0.0.1:8080")
# Public address of the portal, used in links the gateway sends (e.g. deprecation notices).
PORTICO_PORTAL_URL = os.environ.get("PORTICO_PORTAL_URL", "http://127.0.0.1:8000")
# Networks (CIDRs) a team's upstream targets may reach although they are not public: loopback,
# private, link-local and metadata addresses are refused otherwise (staff's own targets are exempt).
PORTICO_UPSTREAM_ALLOWED_NETWORKS = env_list("PORTICO_UPSTREAM_ALLOWED_NETWORKS", "")
# Browser origins allowed to call the gateway (the portal's docs try-it console).
PORTICO_CORS_ORIGINS = env_list("PORTICO_CORS_ORIGINS", PORTICO_PORTAL_URL)
# Redis names shared by the control plane (writers) and the gateway (readers).
PORTICO_CONFIG_VERSION_KEY = "portico:config:version"
PORTICO_CONFIG_CHANNEL = "portico:config"
PORTICO_CALL_LOG_STREAM = os.environ.get("PORTICO_CALL_LOG_STREAM", "portico:calls")
