/* Reference docs: Swagger UI (served locally from drf-spectacular-sidecar) over the version's
 * OpenAPI document, whose server is the Portico gateway. The developer's key secret lives
 * only in this page's memory: Swagger UI's authorization state with persistence off. */
(function () {
  "use strict";
  var script = document.currentScript;
  var config = JSON.parse(document.getElementById("docs-config").textContent);
  var KEY_SHAPE = /^(pt_[a-z0-9]{8})\.[A-Za-z0-9_-]+$/;

  var ui = SwaggerUIBundle({
    url: script.dataset.document,
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: true,
    persistAuthorization: false,
    validatorUrl: null, // never ask swagger.io to validate: nothing leaves for a third party
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
  });
  window.porticoDocs = ui;

  var form = document.getElementById("try-it-key-form");
  var input = document.getElementById("try-it-key");
  var choice = document.getElementById("try-it-key-choice");
  var status = document.getElementById("try-it-status");
  var forget = document.getElementById("try-it-forget");

  function say(text, bad) {
    status.textContent = text;
    status.classList.toggle("bad", !!bad);
  }

  if (choice) {
    var hint = function () {
      input.placeholder = choice.value ? "Paste the secret of " + choice.value + "…" : "pt_…";
    };
    choice.addEventListener("change", hint);
    hint();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var secret = input.value.trim();
    var shape = KEY_SHAPE.exec(secret);
    if (!shape) {
      say("That is not a Portico key: a key reads pt_xxxxxxxx. followed by its secret.", true);
      return;
    }
    if (choice && choice.value && shape[1] !== choice.value) {
      say("That secret belongs to " + shape[1] + "…, not to " + choice.value + "…. Pick the matching key.", true);
      return;
    }
    ui.preauthorizeApiKey(config.scheme, secret);
    input.value = "";
    say("Using key " + shape[1] + "… for requests from this page. Expand an operation and press Execute.");
  });

  forget.addEventListener("click", function () {
    ui.authActions.logout([config.scheme]);
    input.value = "";
    say("Key forgotten: requests will be sent without one.");
  });
})();
