#!/usr/bin/env python3
"""The code browser in a real headless Chromium (selenium + chromedriver).

Builds a small cache from the tiny GPT-2 with codebooks, starts
`codebook serve CACHE --model MODEL --port 0`, and drives the page: search a
regex, open a code from the results, run a prompt, ablate the codes a site
selects at the last position and see the distribution change (JSD > 0),
generate (sampled: the page shows the API's tokens for the same request). Asserts on the DOM (not on pixels); a screenshot of each page goes
to OUT_DIR. Exit 77 (skipped) when selenium or chromium/chromedriver is missing.

usage: serve_browser_test.py CODEBOOK_BIN SOURCE_DIR OUT_DIR [--readme CACHE MODEL]

With --readme it makes the README's screenshot instead (docs/img/serve.png:
OUT_DIR/serve.png): the live model tab over CACHE and MODEL (the main job's
runs/tokfsm-cache and runs/tokfsm), prompt 4312, the codes layer1.mlp and
layer2.mlp select at its last token ablated.
"""
import json
import os
import shutil
import subprocess
import sys
import urllib.request

SKIP = 77


def main():
    codebook, source, out = sys.argv[1], sys.argv[2], sys.argv[3]
    try:
        import numpy as np
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        print("skipped: pip selenium or numpy is not installed")
        return SKIP
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_bin = shutil.which("chromedriver")
    if not chromium or not driver_bin:
        print("skipped: chromium or chromedriver is not installed")
        return SKIP
    def start(cache, model, window):
        """`codebook serve CACHE --model MODEL` on a free port, and a headless Chromium: (server, url, driver)."""
        server = subprocess.Popen([codebook, "serve", cache, "--model", model, "--port", "0", "--threads", "1"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            line = server.stdout.readline()
            url = line[line.index("http://"):].split()[0]
            print("server:", url)
            opts = webdriver.ChromeOptions()
            opts.binary_location = chromium
            for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=" + window]:
                opts.add_argument(a)
            return server, url, webdriver.Chrome(service=Service(driver_bin), options=opts)
        except BaseException:
            server.terminate()
            server.wait()
            raise

    def post(url, path, body):
        req = urllib.request.Request(url + "api/" + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        return json.load(urllib.request.urlopen(req))

    if len(sys.argv) == 7 and sys.argv[4] == "--readme":
        server, url, driver = start(sys.argv[5], sys.argv[6], "1280,900")
        try:
            wait = WebDriverWait(driver, 60)
            byid = lambda i: driver.find_element(By.ID, i)
            driver.get(url)
            wait.until(lambda d: byid("code-header").text.strip() != "")
            driver.find_element(By.CSS_SELECTOR, "nav button[data-tab=live]").click()
            byid("live-prompt").send_keys("4312")
            byid("live-run").click()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#live-tokens .token")) == 5)
            driver.find_elements(By.CSS_SELECTOR, "#live-tokens .token")[-1].click()
            codes = post(url, "run", {"prompt": "4312"})["codes"]
            byid("live-ablate").send_keys("; ".join(f"{s}:{codes[s][-1][0][0]}" for s in ["layer1.mlp", "layer2.mlp"]))
            byid("live-intervene").click()
            wait.until(lambda d: "Jensen-Shannon" in byid("live-jsd").text)
            os.makedirs(out, exist_ok=True)
            driver.save_screenshot(os.path.join(out, "serve.png"))
            print("screenshot:", os.path.join(out, "serve.png"))
            return 0
        finally:
            driver.quit()
            server.terminate()
            server.wait()

    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    model = os.path.join(out, "cb.onnx")
    cache = os.path.join(out, "cache")
    subprocess.run([codebook, "compile", os.path.join(source, "tests/models/gpt2/model.onnx"), "-o", model, "--at",
                    "mlp,attn_preproj", "--groups", "1,heads", "--codes", "64,32", "-k", "2", "--layers", "all"],
                   check=True, stdout=subprocess.DEVNULL)
    rng = np.random.default_rng(7)
    np.save(os.path.join(out, "tokens.npy"), rng.integers(0, 256, (30, 40)).astype(np.int64))
    subprocess.run([codebook, "cache", "build", model, "-o", cache, "--data", os.path.join(out, "tokens.npy"),
                    "--tokenizer", os.path.join(source, "../shared/data/gpt2-bpe"), "--block-size", "16", "--progress",
                    "off", "--scores"], check=True, stdout=subprocess.DEVNULL)

    server, url, driver = start(cache, model, "1280,1000")
    try:
        byid = lambda i: driver.find_element(By.ID, i)

        def shot(name):
            driver.save_screenshot(os.path.join(out, name + ".png"))

        class Wait:
            # WebDriverWait that says what the page's status line says when it times out.
            def until(self, condition):
                try:
                    return WebDriverWait(driver, 30).until(condition)
                except TimeoutException:
                    shot("failed")
                    raise AssertionError("timed out; the page's status: " + repr(byid("status").text))

        wait = Wait()

        def no_error():
            s = byid("status")
            assert "error" not in s.get_attribute("class"), "page error: " + s.text

        # The page loads and shows the first site's code 0.
        driver.get(url)
        wait.until(lambda d: byid("code-header").text.strip() != "")
        no_error()
        assert "code 0" in byid("code-header").text, byid("code-header").text
        shot("browser")

        # Search a regex; the results table fills; a row opens its code.
        driver.find_element(By.CSS_SELECTOR, "nav button[data-tab=search]").click()
        byid("search-regex").send_keys("(e)")
        byid("search-precision").clear()
        byid("search-precision").send_keys("0")
        byid("search-go").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#search-results tbody tr")) > 0)
        no_error()
        assert byid("search-summary").text.startswith("Found "), byid("search-summary").text
        shot("search")
        row = driver.find_elements(By.CSS_SELECTOR, "#search-results tbody tr")[0]
        member, code = [c.text for c in row.find_elements(By.TAG_NAME, "td")[:2]]
        row.click()
        wait.until(lambda d: f"{member} code {code} " in byid("code-header").text)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#examples mark")) > 0)
        no_error()
        assert byid("tab-browser").is_displayed()
        shot("code")

        # Topic codes of a document, and the next document that has one.
        driver.find_element(By.CSS_SELECTOR, "nav button[data-tab=topics]").click()
        byid("topics-recall").clear()
        byid("topics-recall").send_keys("0.3")
        byid("topics-next").click()
        wait.until(lambda d: byid("topics-text").text.startswith("document "))
        no_error()

        # Live model: run a prompt (its BPE tokens are in the tiny model's vocabulary).
        driver.find_element(By.CSS_SELECTOR, "nav button[data-tab=live]").click()
        byid("live-prompt").send_keys("in the re on at")
        byid("live-run").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#live-tokens .token")) == 5)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#live-next tr")) == 10)
        no_error()
        tokens = driver.find_elements(By.CSS_SELECTOR, "#live-tokens .token")
        ActionChains(driver).move_to_element(tokens[0]).perform()
        wait.until(lambda d: "position 0:" in byid("live-hover").text)
        tokens[-1].click()  # pins the last token's codes
        ActionChains(driver).move_to_element(tokens[1]).perform()
        wait.until(lambda d: "position 4:" in byid("live-hover").text and "layer0.mlp" in byid("live-hover").text)
        assert len(driver.find_elements(By.CSS_SELECTOR, "#live-hover .code-link")) > 0
        # The ablate button beside a code adds it at that position to the ablations.
        driver.find_elements(By.CSS_SELECTOR, "#live-hover button.mini")[0].click()
        assert byid("live-ablate").get_attribute("value").endswith("@4"), byid("live-ablate").get_attribute("value")
        byid("live-ablate").clear()

        # Ablate what layer0.mlp selects at the last position: the distribution changes.
        run = post(url, "run", {"prompt": "in the re on at"})
        codes = ",".join(str(c) for c in run["codes"]["layer0.mlp"][-1][0])
        byid("live-ablate").send_keys(f"layer0.mlp:{codes}")
        byid("live-intervene").click()
        wait.until(lambda d: "Jensen-Shannon" in byid("live-jsd").text)
        no_error()
        jsd = float(byid("live-jsd").text.split(":")[1].split()[0])
        assert jsd > 0, byid("live-jsd").text
        assert len(driver.find_elements(By.CSS_SELECTOR, "#live-next-intervened tr")) == 10
        # Sampled generation with the ablation: the page shows what the API gives for the same request.
        for field, value in [("gen-n", "4"), ("gen-temp", "0.8"), ("gen-topk", "40"), ("gen-topp", "0.9"), ("gen-seed", "5")]:
            byid(field).clear()
            byid(field).send_keys(value)
        byid("live-generate").click()
        wait.until(lambda d: len(d.find_elements(By.ID, "gen-with")) == 1)
        no_error()
        gen = post(url, "generate", {"prompt": "in the re on at", "ablate": [f"layer0.mlp:{codes}"], "max_tokens": 4,
                                     "temperature": 0.8, "top_k": 40, "top_p": 0.9, "seed": 5})
        assert len(gen["continuation"]) == 4, gen
        assert byid("gen-with").get_attribute("textContent") == "".join(t["text"] for t in gen["continuation"]), \
            (byid("gen-with").get_attribute("textContent"), gen)
        shot("live")

        # Metrics.
        driver.find_element(By.CSS_SELECTOR, "nav button[data-tab=metrics]").click()
        assert len(driver.find_elements(By.CSS_SELECTOR, "#sites-table tbody tr")) == 4
        shot("metrics")
        print("browser test passed; screenshots in", out)
        return 0
    finally:
        driver.quit()
        server.terminate()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
