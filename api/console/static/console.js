// The console's only script of its own (the CSP allows no inline code): the progress bar
// of a CSV upload (the form is sent by htmx, which reports the upload's progress).
document.addEventListener("htmx:xhr:progress", (event) => {
  const bar = document.getElementById("upload-progress");
  if (!bar || !event.detail.lengthComputable) return;
  bar.hidden = false;
  bar.value = Math.round((100 * event.detail.loaded) / event.detail.total);
});
