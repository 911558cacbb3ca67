// Hover details for the timeline, and a count of the bars the browser drew
// (data-bars-drawn on <html>: the report's browser test reads it).
(function () {
  "use strict";
  var root = document.documentElement;
  var bars = document.querySelectorAll("svg.timeline .bar");
  var drawn = 0;
  for (var i = 0; i < bars.length; i++) {
    var r = bars[i].getBoundingClientRect();
    if (r.width > 0 && r.height > 0) drawn++;
  }
  root.setAttribute("data-bars-drawn", String(drawn));
  var tip = document.getElementById("tip");
  var items = document.querySelectorAll("svg.timeline [data-tip]");
  for (var j = 0; j < items.length; j++) {
    // The script shows the details itself: drop the native tooltip.
    var t = items[j].querySelector("title");
    if (t) t.parentNode.removeChild(t);
    items[j].addEventListener("mousemove", function (e) {
      tip.textContent = this.getAttribute("data-tip");
      tip.hidden = false;
      var x = Math.min(e.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
      tip.style.left = x + "px";
      tip.style.top = (e.clientY + 16) + "px";
    });
    items[j].addEventListener("mouseleave", function () { tip.hidden = true; });
  }
})();
