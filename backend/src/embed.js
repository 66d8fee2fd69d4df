// Cache-aside playground: embeds lessons in any page.
//
//   <script src="https://PLAYGROUND/embed.js" defer></script>
//   <cache-aside-playground lesson="stampede" step="1" theme="auto" height="auto"></cache-aside-playground>
//
// Each element becomes an iframe of the playground's click-to-load lesson
// page; nothing else runs in the host page. With height="auto" the frame
// follows its content: the frame posts its height, and only a message from
// that frame, on the playground's origin, is believed.
// CacheAsidePlayground.setTheme("dark" | "light" | "auto") switches every
// embedded playground live.
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.src) return;
  var root = new URL(".", script.src);
  var TAG = "cache-aside-playground";
  var PREFIX = "cache-aside-playground:";
  var DEFAULT_HEIGHT = 720;

  function frames() {
    return Array.prototype.slice.call(document.querySelectorAll(TAG + " > iframe"));
  }

  function upgrade(element) {
    if (element.querySelector("iframe")) return;
    var lesson = element.getAttribute("lesson") || "basics";
    var query = new URLSearchParams();
    query.set("step", element.getAttribute("step") || "1");
    query.set("theme", element.getAttribute("theme") || "auto");
    var height = element.getAttribute("height") || String(DEFAULT_HEIGHT);
    var auto = height === "auto";
    if (auto) query.set("autoheight", "1");
    var frame = document.createElement("iframe");
    frame.src = new URL("embed/" + encodeURIComponent(lesson) + "?" + query.toString(), root).href;
    frame.title = element.getAttribute("title") || "Cache-aside playground lesson: " + lesson;
    frame.loading = "lazy";
    frame.setAttribute("data-auto-height", auto ? "1" : "0");
    frame.style.border = "0";
    frame.style.width = "100%";
    frame.style.height = (auto ? DEFAULT_HEIGHT : parseInt(height, 10) || DEFAULT_HEIGHT) + "px";
    element.appendChild(frame);
  }

  window.addEventListener("message", function (event) {
    if (event.origin !== root.origin) return;
    var data = event.data;
    if (!data || data.type !== PREFIX + "height") return;
    var height = Number(data.height);
    if (!isFinite(height) || height < 100 || height > 20000) return;
    frames().forEach(function (frame) {
      if (frame.contentWindow === event.source && frame.getAttribute("data-auto-height") === "1") {
        frame.style.height = Math.ceil(height) + "px";
      }
    });
  });

  window.CacheAsidePlayground = {
    setTheme: function (theme) {
      frames().forEach(function (frame) {
        if (frame.contentWindow) {
          frame.contentWindow.postMessage({ type: PREFIX + "theme", theme: theme }, root.origin);
        }
      });
    },
  };

  function upgradeAll() {
    Array.prototype.forEach.call(document.getElementsByTagName(TAG), upgrade);
  }
  upgradeAll();
  // Sites that render pages in the browser add elements later.
  new MutationObserver(upgradeAll).observe(document.documentElement, { childList: true, subtree: true });
})();
