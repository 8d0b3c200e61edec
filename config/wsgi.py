import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
django_application = get_wsgi_application()

# Cached entitlement answers are served in front of Django (issue 8: 2,000 requests/s on 2 cores);
# every other request, and every one the caches cannot answer, goes to Django (api/fastpath.py).
from api.fastpath import EntitlementFastPath  # noqa: E402  (needs the apps loaded above)

application = EntitlementFastPath(django_application)
