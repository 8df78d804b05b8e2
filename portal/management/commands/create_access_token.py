from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from portal.services.errors import ServiceError
from portal.services.tokens import create_access_token


class Command(BaseCommand):
    help = "Create a personal access token for the management REST API and print it (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("name")

    def handle(self, *args, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        try:
            _token, secret = create_access_token(user, name)
        except ServiceError as error:
            raise CommandError(error.message) from error
        self.stdout.write(secret)
