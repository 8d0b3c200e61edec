app_name = "stripe_billing"
urlpatterns = []
