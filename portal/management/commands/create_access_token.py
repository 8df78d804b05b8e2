"""``manage.py create_access_token <username> <name> [--expires-in-days N]``: print a new
personal access token for the management REST API. It is shown this once; only a hash is kept."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from portal.services.errors import ServiceError
from portal.services.tokens import create_access_token


class Command(BaseCommand):
    help = "Create a personal access token for the management REST API and print it (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("name", help="What the token is for, e.g. 'laptop' or 'CI'.")
        parser.add_argument("--expires-in-days", type=int, default=None, help="Default: never expires.")

    def handle(self, *args, username, name, expires_in_days, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        if not user.is_active:
            raise CommandError(f"{username!r} is not active; a token would not work.")
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days is not None else None
        try:
            _token, secret = create_access_token(actor=user, name=name, expires_at=expires_at)
        except ServiceError as error:
            raise CommandError(error.message) from error
        self.stdout.write(secret)
