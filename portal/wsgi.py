import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()

from portal.startup import check_secret_key  # noqa: E402  (needs the settings loaded above)

check_secret_key()
