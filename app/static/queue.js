// Keyboard grading: 0-3 grade the item shown, n says "can't judge"; the next item appears at once, and keys keep
// working while earlier grades are still on their way (each is saved on its own; a refused one comes back to the front).
(function () {
  const queue = document.getElementById("queue");
  if (!queue) return;
  const csrf = queue.dataset.csrf;
  const remaining = document.getElementById("remaining");
  const status = document.getElementById("status");
  const done = document.getElementById("done");

  function current() {
    return queue.querySelector("article.item:not([hidden]):not(.sent)");
  }

  function show(item) {
    for (const other of queue.querySelectorAll("article.item")) other.hidden = other !== item;
    done.hidden = Boolean(item);
  }

  async function grade(value) {
    const item = current();
    if (!item) return;
    const body = new FormData();
    if (value === "n") body.append("cant_judge", "1");
    else body.append("grade", value);
    const reason = item.querySelector("select.reason").value;
    if (reason) body.append("reason", reason);
    item.classList.add("sent");
    let next = item.nextElementSibling;
    while (next && next.classList.contains("sent")) next = next.nextElementSibling;
    show(next);
    try {
      // redirect: "manual": an expired session answers a redirect to the login page, which is no saved grade.
      const r = await fetch(`/review/items/${item.dataset.id}/grade`, {
        method: "POST", body, headers: {"X-CSRF-Token": csrf}, credentials: "same-origin", redirect: "manual",
      });
      const json = (r.headers.get("content-type") || "").includes("application/json");
      if (r.type === "opaqueredirect") throw new Error("登录已过期，请重新登录");
      if (!r.ok || !json) throw new Error(`${r.status}`);
      item.remove();
      const left = Math.max(0, Number(remaining.textContent) - 1);
      remaining.textContent = String(left);
      status.textContent = `已保存：${value === "n" ? "无法判断" : value + " 分"}`;
      // The page holds the first 100 items: when they are done and more wait, fetch the next ones.
      if (left > 0 && !queue.querySelector("article.item")) window.location.reload();
    } catch (err) {
      item.classList.remove("sent");
      show(item);
      status.textContent = `保存失败（${err.message}），请重试`;
    }
  }

  document.addEventListener("keydown", (e) => {
    if (e.target.closest && e.target.closest("select, input, textarea")) return;
    if (["0", "1", "2", "3", "n", "N"].includes(e.key)) {
      e.preventDefault();
      grade(e.key.toLowerCase());
    }
  });
  queue.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-grade]");
    if (b) grade(b.dataset.grade);
  });
})();
