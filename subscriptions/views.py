from django.shortcuts import render

from accounts.decorators import account_required


@account_required("view_usage")
def overview(request):
    account = request.account
    return render(
        request,
        "billing/overview.html",
        {
            "account": account,
            "subscription": account.subscription,
            "properties": account.properties.live().order_by("created_at", "id"),
        },
    )
