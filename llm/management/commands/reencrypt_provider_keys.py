"""Re-encrypt every provider credential under the first PORTICO_ENCRYPTION_KEY (after a rotation:
put the new key first, keep the old one after it, run this, then drop the old key)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from llm import crypto, services


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = services.reencrypt_keys()
        except crypto.CredentialUnreadable as error:
            raise CommandError(f"{error} Nothing was changed; keep the old key in PORTICO_ENCRYPTION_KEY.") from error
        self.stdout.write(f"{count} provider key(s) re-encrypted under the current key.")
