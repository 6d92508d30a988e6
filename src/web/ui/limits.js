// The input limits the server enforces (GET /api/limits), read once at start, so a form
// never takes more than the server keeps (issue 18 item 1). `limits` is filled in place.
import { api } from "./api.js";

export const limits = {};

// Loads the limits; a failure leaves the forms with their own defaults.
export async function loadLimits() {
  try {
    Object.assign(limits, await api("GET", "/api/limits"));
  } catch (e) {
    // The server still refuses too long input with a Japanese message.
  }
  return limits;
}
