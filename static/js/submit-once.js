// A form marked data-submit-once sends once: its submit button is disabled on the first submit and
// says what is happening (the value of the attribute). The server refuses a second request anyway
// (PAY-5: an attempt in flight refuses the next one); this only spares the customer the message.
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!form.hasAttribute || !form.hasAttribute("data-submit-once")) return;
  if (form.dataset.sent) { event.preventDefault(); return; }
  form.dataset.sent = "1";
  var button = form.querySelector("button[type=submit]");
  if (button) {
    // Disabled after this event, so that the button's own name/value is still sent.
    setTimeout(function () { button.disabled = true; button.textContent = form.getAttribute("data-submit-once"); }, 0);
  }
});
