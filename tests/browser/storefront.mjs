// The storefront clicked through in headless Chromium, as a person would: the seed's failure
// flow (the gateway is seeded so that the first charge declines), the retry that pays, the order
// history, an admin shipping and delivering the order and making a product, and a second user
// who cannot see the first one's orders. Started by tests/browser.rs, which starts the system.
//
// SHOP_BASE        the gateway, e.g. http://127.0.0.1:8000
// SHOP_ADMIN       the admin's password
// SHOP_SHOTS       where each page's screenshot goes (a folder under target/)
// SHOP_CHROMIUM    the browser (default /usr/bin/chromium)
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const base = process.env.SHOP_BASE;
const adminPassword = process.env.SHOP_ADMIN;
const shots = process.env.SHOP_SHOTS;
if (!base || !adminPassword || !shots) {
  console.error("storefront.mjs: set SHOP_BASE, SHOP_ADMIN and SHOP_SHOTS");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const REASONS = ["Insufficient funds", "Card declined", "Card expired", "Transaction limit exceeded", "Gateway timeout"];

function check(ok, what) {
  if (!ok) throw new Error(`expected: ${what}`);
  console.log(`ok - ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.SHOP_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // This machine's network is closed: no background fetches, no first-run work.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(e.message));
// Each page is looked at before its picture is taken: nothing the script failed to render.
const shot = async (name) => {
  const text = await page.locator("main").innerText();
  check(!/\[object |\bundefined\b|\bnull\b|NaN/.test(text), `the ${name} page shows no raw values`);
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
};
const flash = () => page.locator("#flash").innerText();
const go = async (hash) => {
  await page.goto(`${base}/${hash}`);
  await page.waitForLoadState("networkidle");
};

async function register(name) {
  await go("#/register");
  await page.fill("#f-username", name);
  await page.fill("#f-email", `${name}@example.com`);
  await page.fill("#f-password", "password123");
  await page.click("form button[type=submit]");
  await page.waitForSelector("#logout:not([hidden])");
}

async function logout() {
  await page.click("#logout");
  await page.waitForSelector("#login-link:not([hidden])");
}

try {
  // The catalog, before logging in: products, no buying.
  await go("");
  await page.waitForSelector("article.product");
  const products = await page.locator("article.product").count();
  check(products >= 2, `the catalog shows the products (${products})`);
  check((await page.locator("article.product .hint").count()) === products, "a visitor is asked to log in to buy");
  await shot("catalog");

  // A wrong password is told in words.
  await go("#/login");
  await page.fill("#f-username", "nobody");
  await page.fill("#f-password", "not-the-password");
  await page.click("form button[type=submit]");
  await page.waitForSelector("#flash:not([hidden])");
  check(/invalid username or password/i.test(await flash()), `a failed login says why: "${await flash()}"`);

  // ann registers, fills her cart and changes a quantity.
  await register("ann");
  check(/welcome, ann/i.test(await flash()), "registering logs ann in");
  await page.waitForSelector("article.product .buy");
  const first = page.locator("article.product").nth(0);
  const second = page.locator("article.product").nth(1);
  await first.locator("button").click();
  await page.waitForSelector("#flash.ok");
  await second.locator("input").fill("3");
  await second.locator("button").click();
  await page.waitForFunction(() => document.getElementById("cart-count").textContent === "(4)");
  check(true, "the cart count shows 4 items");

  await go("#/cart");
  await page.waitForSelector("table.cart");
  const line = page.locator("table.cart tbody tr").nth(1);
  await line.locator("input").fill("2");
  await line.locator("input").dispatchEvent("change");
  await page.waitForFunction(() => document.getElementById("cart-count").textContent === "(3)");
  await page.waitForSelector("table.cart");
  const sum = await page.$$eval("table.cart tbody td.subtotal", (cells) =>
    cells.reduce((s, c) => s + Math.round(Number(c.textContent.replace("$", "")) * 100), 0),
  );
  const total = Math.round(Number((await page.locator("#total").innerText()).replace("$", "")) * 100);
  check(total === sum && total > 0, `the total (${total / 100}) is the sum of the lines`);
  await shot("cart");

  // The first charge is declined: the reason in words, the cart kept, a way to try again.
  await page.click("#checkout");
  await page.waitForSelector("[data-outcome]");
  check((await page.getAttribute("[data-outcome]", "data-outcome")) === "CANCELLED", "the first checkout is cancelled");
  const reason = await page.locator(".outcome .reason").innerText();
  check(REASONS.some((r) => reason.includes(r)), `the gateway's reason is shown: "${reason}"`);
  check((await page.locator("table.cart tbody tr").count()) === 2, "the cart is kept after a failed payment");
  await shot("declined");

  // The retry pays: the transaction id, the cart emptied.
  await page.click("#retry");
  await page.waitForSelector("[data-outcome=PAID]");
  const txn = await page.locator(".outcome .txn").innerText();
  check(/^TXN_/.test(txn), `the retry is paid with transaction ${txn}`);
  check((await page.locator("table.cart").count()) === 0, "a paid checkout empties the cart");
  await shot("paid");

  // The order history: both orders, and the paid one's steps.
  await go("#/orders");
  await page.waitForSelector("table.orders");
  const statuses = await page.$$eval("table.orders .status", (s) => s.map((x) => x.textContent));
  check(statuses.includes("PAID") && statuses.includes("CANCELLED"), `the history lists both orders (${statuses})`);
  const paidRow = page.locator("table.orders tr", { has: page.locator(".status.paid") });
  const paidId = Number((await paidRow.getAttribute("data-order")) || 0);
  await shot("orders");
  await paidRow.locator("a").click();
  await page.waitForSelector("ol.history li");
  check((await page.locator("main .txn").innerText()) === txn, "the order page shows its transaction id");
  check(/approved/i.test(await page.locator("ol.history").innerText()), "the order's history shows the payment approved");
  await shot("order");
  await logout();

  // The admin ships and delivers ann's order and adds a product.
  await go("#/login");
  await page.fill("#f-username", "admin");
  await page.fill("#f-password", adminPassword);
  await page.click("form button[type=submit]");
  await page.waitForSelector("nav a[data-nav=admin]:not([hidden])");
  await go("#/admin");
  await page.fill("#admin-order-id", String(paidId));
  await page.click("form:has(#admin-order-id) button");
  await page.click("text=Mark shipped");
  await page.waitForSelector("#admin-order .status.shipped");
  await page.click("text=Mark delivered");
  await page.waitForSelector("#admin-order .status.delivered");
  check(true, `the admin shipped and delivered order #${paidId}`);
  const created = page.locator("form.product-form[data-product=new]");
  await created.locator("[aria-label=Name]").fill("Browser <b>mug</b>");
  await created.locator("[aria-label=Price]").fill("12.50");
  await created.locator("[aria-label=Stock]").fill("7");
  await created.locator("button").click();
  await page.waitForSelector("#flash.ok");
  await created.locator("[aria-label=Price]").fill("12.505");
  await created.locator("[aria-label=Name]").fill("Too exact");
  await created.locator("button").click();
  await page.waitForSelector("#flash.error");
  check(/two decimal places/i.test(await flash()), `a bad price is refused in words: "${await flash()}"`);
  await shot("admin");
  // Edit the new product's price, delete another.
  const mug = page.locator(".admin-product", { has: page.locator('input[aria-label=Name][value="Browser <b>mug</b>"]') });
  await mug.locator("[aria-label=Price]").fill("13.00");
  await mug.locator("button[type=submit]").click();
  await page.waitForFunction(() => /^Saved /.test(document.getElementById("flash").textContent));
  const headphones = page.locator(".admin-product", { has: page.locator('input[aria-label=Name][value="Headphones"]') });
  await headphones.locator("button.danger").click();
  await page.waitForFunction(() => /^Deleted Headphones/.test(document.getElementById("flash").textContent));
  check(true, "the admin edited one product and deleted another");
  await go("");
  await page.waitForSelector("article.product");
  const mugCard = page.locator("article.product", { has: page.locator("h3", { hasText: "Browser <b>mug</b>" }) });
  check((await mugCard.count()) === 1, "the new product is in the catalog, its name shown as text");
  check((await mugCard.locator(".price").innerText()) === "$13.00", "at its edited price");
  check((await page.locator("article.product h3", { hasText: "Headphones" }).count()) === 0, "the deleted product is gone");
  await logout();

  // bob sees none of ann's orders, and her order page tells him it is not there.
  await register("bob");
  await go("#/orders");
  // The orders view itself (a table, or the words for none): a "main p" of the page before could
  // still be there.
  await page.waitForSelector('main table.orders, main p:has-text("No orders yet")');
  check(/no orders yet/i.test(await page.locator("main").innerText()), "bob's order history is empty");
  await go(`#/orders/${paidId}`);
  await page.waitForSelector("#flash:not([hidden])");
  check(/not found/i.test(await flash()), `ann's order is not found for bob: "${await flash()}"`);
  check(!(await page.locator("main").innerText()).includes(txn), "nothing of ann's order reaches bob's page");
  await shot("not-yours");

  check(pageErrors.length === 0, `no script errors on the pages (${pageErrors.join("; ")})`);
  await browser.close();
} catch (e) {
  console.error(`not ok - ${e.message}`);
  await shot("failure").catch(() => {});
  await browser.close();
  process.exit(1);
}
