// Bulk buttons act on the ticked rows: with none ticked there is nothing to act on.
function syncBulkButtons() {
  const picked = document.querySelector("[data-bulk-pick]:checked") !== null;
  for (const button of document.querySelectorAll("[data-bulk]")) button.disabled = !picked;
}

document.addEventListener("change", (event) => {
  if (event.target.matches("[data-bulk-pick]")) syncBulkButtons();
});
// The table is swapped in by htmx after filters, paging and actions.
document.addEventListener("htmx:load", syncBulkButtons);
syncBulkButtons();
