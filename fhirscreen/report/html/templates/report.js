// Filters for the ranked table. Progressive enhancement: without this script the table shows everyone.
(function () {
  "use strict";
  var form = document.getElementById("filters");
  var table = document.getElementById("ranked-table");
  if (!form || !table) { return; }
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var count = document.getElementById("shown-count");
  function apply() {
    var statuses = Array.prototype.slice.call(form.querySelectorAll("input[name=status]:checked"))
      .map(function (box) { return box.value; });
    var criterion = form.elements.criterion.value;
    var outcome = form.elements.outcome.value;
    var query = form.elements.q.value.trim().toLowerCase();
    var shown = 0;
    rows.forEach(function (row) {
      var codes = " " + row.getAttribute("data-outcomes") + " ";
      var ok = statuses.indexOf(row.getAttribute("data-status")) >= 0;
      if (ok && outcome) {
        ok = criterion ? codes.indexOf(" " + criterion + ":" + outcome + " ") >= 0
                       : codes.indexOf(":" + outcome + " ") >= 0;
      }
      if (ok && query) { ok = row.getAttribute("data-search").indexOf(query) >= 0; }
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = shown + " of " + rows.length + " patients shown";
  }
  // Printing shows every patient and every piece of evidence, whatever the filters and folds.
  window.addEventListener("beforeprint", function () {
    Array.prototype.forEach.call(document.querySelectorAll("details"), function (d) { d.open = true; });
  });
  form.hidden = false;
  form.addEventListener("input", apply);
  form.addEventListener("change", apply);
  form.addEventListener("submit", function (event) { event.preventDefault(); });
  form.addEventListener("reset", function () { window.setTimeout(apply, 0); });
  apply();
}());
