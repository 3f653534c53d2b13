// Sizes and durations as every surface of the product shows them: IEC units (1 KiB = 1,024
// bytes), the same rule as uploads/units.py, so a file reads the same in the uploader, the
// lists, the staff pages and the CLI.

const UNITS = ["KiB", "MiB", "GiB", "TiB"];

export function formatBytes(bytes) {
  const n = Math.max(0, Math.round(bytes));
  if (n < 1024) return n === 1 ? "1 byte" : `${n} bytes`;
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${UNITS[unit]}`;
}

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds <= 0) return "";
  if (seconds < 60) return `${Math.ceil(seconds)} s left`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.ceil(seconds % 60)} s left`;
  return `${Math.floor(seconds / 3600)} h ${Math.ceil((seconds % 3600) / 60)} min left`;
}
