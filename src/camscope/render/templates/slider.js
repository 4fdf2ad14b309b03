const SLICES = JSON.parse(document.getElementById('camscope-slices').textContent);
function showSlice(id, index) {
  const image = document.getElementById(id + '-img');
  const label = document.getElementById(id + '-label');
  const entry = SLICES[id];
  image.src = entry.images[index];
  image.dataset.slice = entry.indices[index];
  label.textContent = 'slice ' + entry.indices[index] + ' / ' + (entry.depth - 1);
}
document.querySelectorAll('input.slice-slider').forEach(function (slider) {
  slider.addEventListener('input', function () {
    showSlice(slider.dataset.target, +slider.value);
  });
});
