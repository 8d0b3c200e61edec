"""Response headers that keep a customer's billing pages out of shared and browser caches.

`PrivateNoStoreMiddleware` marks every answer to a logged-in user, and every page under the
billing and account paths (BILLING_NO_STORE_PREFIXES), `Cache-Control: private, no-store`, unless
the view chose its own caching (the API's entitlements, the admin's never_cache): a billing page
holds invoices, card digits and addresses that a proxy or the back button of a shared computer
must not keep (issue 28). The Content-Security-Policy on every page is django-csp's
(`CONTENT_SECURITY_POLICY` in the settings).
"""

from django.conf import settings

NO_STORE = "private, no-store"


class PrivateNoStoreMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.has_header("Cache-Control"):
            return response
        if request.path.startswith(tuple(settings.BILLING_NO_STORE_PREFIXES)) or self.logged_in(request):
            response["Cache-Control"] = NO_STORE
        return response

    @staticmethod
    def logged_in(request) -> bool:
        """Without a session cookie nobody is logged in: the session is not read (reading it would
        add `Vary: Cookie` to answers that have nothing to do with one, such as the API's)."""
        if settings.SESSION_COOKIE_NAME not in request.COOKIES:
            return False
        user = getattr(request, "user", None)
        return user is not None and user.is_authenticated
