"""Web-page boilerplate for the sample crawl: what a crawled page carries besides its article.

A real crawl's text is not clean prose. CommonCrawl's WET text of a page holds its navigation menu,
breadcrumbs, the byline, share buttons, tag lists, "previous / next" links, the newsletter box, the
footer and the cookie banner; HTML extraction (trafilatura) strips the page chrome (``<nav>``,
``<aside>``, ``<footer>``) but keeps what sits inside the article: byline, share line, tags.

Each site (URL host) has one template, drawn once from the snapshot's seed: which blocks it shows,
its menu, its separator, its authors, its UI language (the page's language; some sites show an
untranslated English cookie banner, as consent tools often do). Pages of one site share the
template's lines and vary in the per-page ones (date, author, comment count, tags), so a duplicate
of a page on the same site keeps its boilerplate, and the template lines are what a
deduplicator sees repeated across the site's pages.

    site_templates(languages, rng)              language -> its sites
    page_boilerplate(site, content, rng, ...)   the lines around one page's text
    page_chrome_html(site)                      the <header>/<nav>/<aside>/<footer> of a WARC page
"""

from __future__ import annotations

import html
import random
import re
from dataclasses import dataclass

UI_KEYS = (
    "home", "news", "forum", "downloads", "about", "contact", "search", "login", "register", "privacy",
    "terms", "skip", "cookies", "accept", "settings", "share", "subscribe", "read_more", "related", "tags",
    "comments", "published", "by", "rights", "previous", "next", "popular", "categories",
)  # fmt: skip
# One "|"-separated string per language, in UI_KEYS order (no string holds a "|").
_UI = {
    "en": "Home|News|Forum|Downloads|About us|Contact|Search|Log in|Register|Privacy policy|Terms of use|"
    "Skip to content|This website uses cookies to give you the best experience.|Accept all|Cookie settings|"
    "Share|Subscribe to our newsletter|Read more|Related articles|Tags|comments|Published|by|"
    "All rights reserved|Previous|Next|Most read|Categories",
    "de": "Startseite|Nachrichten|Forum|Downloads|Über uns|Kontakt|Suche|Anmelden|Registrieren|Datenschutz|"
    "Nutzungsbedingungen|Zum Inhalt springen|Diese Website verwendet Cookies, um Ihnen das beste Erlebnis "
    "zu bieten.|Alle akzeptieren|Cookie-Einstellungen|Teilen|Newsletter abonnieren|Weiterlesen|"
    "Ähnliche Artikel|Schlagwörter|Kommentare|Veröffentlicht am|von|Alle Rechte vorbehalten|Zurück|Weiter|"
    "Meistgelesen|Kategorien",
    "fr": "Accueil|Actualités|Forum|Téléchargements|À propos|Contact|Rechercher|Connexion|S'inscrire|"
    "Politique de confidentialité|Conditions d'utilisation|Aller au contenu|Ce site utilise des cookies "
    "pour vous offrir la meilleure expérience.|Tout accepter|Paramètres des cookies|Partager|"
    "S'abonner à la newsletter|Lire la suite|Articles similaires|Mots-clés|commentaires|Publié le|par|"
    "Tous droits réservés|Précédent|Suivant|Les plus lus|Catégories",
    "es": "Inicio|Noticias|Foro|Descargas|Quiénes somos|Contacto|Buscar|Iniciar sesión|Registrarse|"
    "Política de privacidad|Condiciones de uso|Saltar al contenido|Este sitio web utiliza cookies para "
    "ofrecerle la mejor experiencia.|Aceptar todas|Configuración de cookies|Compartir|"
    "Suscríbete a nuestro boletín|Leer más|Artículos relacionados|Etiquetas|comentarios|Publicado el|por|"
    "Todos los derechos reservados|Anterior|Siguiente|Lo más leído|Categorías",
    "it": "Home|Notizie|Forum|Download|Chi siamo|Contatti|Cerca|Accedi|Registrati|Informativa sulla privacy|"
    "Termini di utilizzo|Vai al contenuto|Questo sito utilizza i cookie per offrirti la migliore "
    "esperienza.|Accetta tutti|Impostazioni cookie|Condividi|Iscriviti alla newsletter|Leggi tutto|"
    "Articoli correlati|Tag|commenti|Pubblicato il|di|Tutti i diritti riservati|Precedente|Successivo|"
    "I più letti|Categorie",
    "pt": "Início|Notícias|Fórum|Downloads|Sobre nós|Contato|Pesquisar|Entrar|Cadastrar|"
    "Política de privacidade|Termos de uso|Pular para o conteúdo|Este site utiliza cookies para oferecer "
    "a melhor experiência.|Aceitar todos|Configurações de cookies|Compartilhar|Assine a nossa newsletter|"
    "Leia mais|Artigos relacionados|Etiquetas|comentários|Publicado em|por|Todos os direitos reservados|"
    "Anterior|Próximo|Mais lidos|Categorias",
    "nl": "Home|Nieuws|Forum|Downloads|Over ons|Contact|Zoeken|Inloggen|Registreren|Privacybeleid|"
    "Gebruiksvoorwaarden|Naar de inhoud|Deze website gebruikt cookies om u de beste ervaring te bieden.|"
    "Alles accepteren|Cookie-instellingen|Delen|Abonneer op onze nieuwsbrief|Lees meer|"
    "Gerelateerde artikelen|Tags|reacties|Gepubliceerd op|door|Alle rechten voorbehouden|Vorige|Volgende|"
    "Meest gelezen|Categorieën",
    "pl": "Strona główna|Aktualności|Forum|Pobierz|O nas|Kontakt|Szukaj|Zaloguj się|Zarejestruj się|"
    "Polityka prywatności|Regulamin|Przejdź do treści|Ta strona używa plików cookie, aby zapewnić "
    "najlepsze wrażenia.|Akceptuj wszystkie|Ustawienia plików cookie|Udostępnij|"
    "Zapisz się do newslettera|Czytaj dalej|Powiązane artykuły|Tagi|komentarzy|Opublikowano|autor|"
    "Wszelkie prawa zastrzeżone|Poprzedni|Następny|Najczęściej czytane|Kategorie",
    "cs": "Domů|Novinky|Fórum|Ke stažení|O nás|Kontakt|Hledat|Přihlásit se|Registrace|"
    "Ochrana osobních údajů|Podmínky použití|Přejít k obsahu|Tento web používá soubory cookie, aby vám "
    "poskytl co nejlepší zážitek.|Přijmout vše|Nastavení cookies|Sdílet|Přihlaste se k odběru novinek|"
    "Číst dále|Související články|Štítky|komentářů|Publikováno|autor|Všechna práva vyhrazena|Předchozí|"
    "Další|Nejčtenější|Kategorie",
    "sv": "Hem|Nyheter|Forum|Nedladdningar|Om oss|Kontakt|Sök|Logga in|Registrera|Integritetspolicy|"
    "Användarvillkor|Hoppa till innehållet|Den här webbplatsen använder cookies för att ge dig den bästa "
    "upplevelsen.|Acceptera alla|Cookie-inställningar|Dela|Prenumerera på vårt nyhetsbrev|Läs mer|"
    "Relaterade artiklar|Taggar|kommentarer|Publicerad|av|Alla rättigheter förbehållna|Föregående|Nästa|"
    "Mest läst|Kategorier",
    "ro": "Acasă|Știri|Forum|Descărcări|Despre noi|Contact|Caută|Autentificare|Înregistrare|"
    "Politica de confidențialitate|Termeni și condiții|Salt la conținut|Acest site folosește cookie-uri "
    "pentru a vă oferi cea mai bună experiență.|Acceptă toate|Setări cookie|Distribuie|"
    "Abonează-te la newsletter|Citește mai mult|Articole similare|Etichete|comentarii|Publicat pe|de|"
    "Toate drepturile rezervate|Anterior|Următor|Cele mai citite|Categorii",
    "ca": "Inici|Notícies|Fòrum|Descàrregues|Qui som|Contacte|Cerca|Inicia la sessió|Registra't|"
    "Política de privadesa|Condicions d'ús|Vés al contingut|Aquest lloc web utilitza galetes per "
    "oferir-vos la millor experiència.|Accepta-les totes|Configuració de galetes|Comparteix|"
    "Subscriu-te al butlletí|Llegeix més|Articles relacionats|Etiquetes|comentaris|Publicat el|per|"
    "Tots els drets reservats|Anterior|Següent|El més llegit|Categories",
    "da": "Forside|Nyheder|Forum|Downloads|Om os|Kontakt|Søg|Log ind|Opret bruger|Privatlivspolitik|"
    "Brugsvilkår|Gå til indhold|Dette websted bruger cookies for at give dig den bedste oplevelse.|"
    "Accepter alle|Cookie-indstillinger|Del|Tilmeld dig vores nyhedsbrev|Læs mere|Relaterede artikler|"
    "Tags|kommentarer|Udgivet|af|Alle rettigheder forbeholdes|Forrige|Næste|Mest læste|Kategorier",
    "id": "Beranda|Berita|Forum|Unduhan|Tentang kami|Kontak|Cari|Masuk|Daftar|Kebijakan privasi|"
    "Syarat penggunaan|Langsung ke konten|Situs web ini menggunakan cookie untuk memberikan pengalaman "
    "terbaik.|Terima semua|Pengaturan cookie|Bagikan|Berlangganan buletin kami|Baca selengkapnya|"
    "Artikel terkait|Tag|komentar|Diterbitkan|oleh|Hak cipta dilindungi undang-undang|Sebelumnya|"
    "Berikutnya|Terpopuler|Kategori",
    "vi": "Trang chủ|Tin tức|Diễn đàn|Tải về|Giới thiệu|Liên hệ|Tìm kiếm|Đăng nhập|Đăng ký|"
    "Chính sách bảo mật|Điều khoản sử dụng|Chuyển đến nội dung|Trang web này sử dụng cookie để mang lại "
    "trải nghiệm tốt nhất cho bạn.|Chấp nhận tất cả|Cài đặt cookie|Chia sẻ|Đăng ký nhận bản tin|Xem thêm|"
    "Bài viết liên quan|Thẻ|bình luận|Đăng ngày|bởi|Bảo lưu mọi quyền|Trước|Tiếp theo|Đọc nhiều nhất|"
    "Chuyên mục",
    "ru": "Главная|Новости|Форум|Загрузки|О нас|Контакты|Поиск|Войти|Регистрация|"
    "Политика конфиденциальности|Условия использования|Перейти к содержимому|Этот сайт использует файлы "
    "cookie, чтобы обеспечить вам наилучший опыт.|Принять все|Настройки cookie|Поделиться|"
    "Подпишитесь на нашу рассылку|Читать далее|Похожие статьи|Метки|комментариев|Опубликовано|автор|"
    "Все права защищены|Назад|Далее|Самое читаемое|Рубрики",
    "uk": "Головна|Новини|Форум|Завантаження|Про нас|Контакти|Пошук|Увійти|Реєстрація|"
    "Політика конфіденційності|Умови використання|Перейти до вмісту|Цей сайт використовує файли cookie, "
    "щоб забезпечити вам найкращий досвід.|Прийняти всі|Налаштування cookie|Поділитися|"
    "Підпишіться на нашу розсилку|Читати далі|Схожі статті|Мітки|коментарів|Опубліковано|автор|"
    "Усі права захищені|Назад|Далі|Найпопулярніше|Рубрики",
    "el": "Αρχική|Νέα|Φόρουμ|Λήψεις|Σχετικά με εμάς|Επικοινωνία|Αναζήτηση|Σύνδεση|Εγγραφή|"
    "Πολιτική απορρήτου|Όροι χρήσης|Μετάβαση στο περιεχόμενο|Αυτός ο ιστότοπος χρησιμοποιεί cookies για "
    "να σας προσφέρει την καλύτερη εμπειρία.|Αποδοχή όλων|Ρυθμίσεις cookies|Κοινοποίηση|"
    "Εγγραφείτε στο ενημερωτικό δελτίο|Διαβάστε περισσότερα|Σχετικά άρθρα|Ετικέτες|σχόλια|Δημοσιεύτηκε|"
    "από|Με επιφύλαξη παντός δικαιώματος|Προηγούμενο|Επόμενο|Τα πιο δημοφιλή|Κατηγορίες",
    "ja": "ホーム|ニュース|フォーラム|ダウンロード|私たちについて|お問い合わせ|検索|ログイン|新規登録|"
    "プライバシーポリシー|利用規約|本文へスキップ|当サイトでは、最適な体験を提供するためにクッキーを使用して"
    "います。|すべて同意する|クッキー設定|シェアする|ニュースレターを購読する|続きを読む|関連記事|タグ|"
    "件のコメント|投稿日|投稿者|無断転載を禁じます|前へ|次へ|人気記事|カテゴリー",
    "zh": "首页|新闻|论坛|下载|关于我们|联系我们|搜索|登录|注册|隐私政策|使用条款|跳到主要内容|"
    "本网站使用Cookie以便为您提供最佳体验。|全部接受|Cookie设置|分享|订阅我们的新闻通讯|阅读更多|相关文章|"
    "标签|条评论|发布于|作者|版权所有|上一篇|下一篇|热门文章|分类",
    "ko": "홈|뉴스|포럼|다운로드|회사 소개|문의하기|검색|로그인|회원가입|개인정보처리방침|이용약관|"
    "본문 바로가기|이 웹사이트는 최상의 경험을 제공하기 위해 쿠키를 사용합니다.|모두 허용|쿠키 설정|"
    "공유하기|뉴스레터 구독하기|더 보기|관련 기사|태그|개의 댓글|게시일|작성자|모든 권리 보유|이전|다음|"
    "많이 본 기사|카테고리",
}
UI = {language: dict(zip(UI_KEYS, text.split("|"), strict=True)) for language, text in _UI.items()}
CJK_UI = {"ja", "zh"}  # no spaces between words; the comment count precedes its word
NAV_KEYS = ("news", "forum", "downloads", "about", "contact", "search", "login", "register", "categories")
NAV_SEPARATORS = (" | ", " · ", " ", " / ", " » ")
SHARE_TARGETS = ("Facebook", "X", "LinkedIn", "Reddit", "WhatsApp", "Telegram", "E-Mail")
AUTHORS = (
    "admin", "redaktion", "editor", "webmaster", "anna", "jan", "maria", "li", "olga", "pierre", "kenji",
)  # fmt: skip
# Optional blocks and the share of sites showing each; the menu and the footer are on every site.
BLOCKS = {
    "skip": 0.4, "byline": 0.7, "share": 0.6, "tags": 0.5, "pager": 0.4, "subscribe": 0.4, "cookies": 0.5,
}  # fmt: skip
_TAG_WORD = re.compile(r"[^\W\d_]{5,}")
_KO_WORD = re.compile(r"[^\W\d_]{2,}")


@dataclass(frozen=True)
class SiteTemplate:
    """One site's page layout: the blocks it shows and the fixed text of its chrome."""

    host: str
    brand: str
    language: str  # of the UI
    blocks: tuple[str, ...]
    menu: tuple[str, ...]
    separator: str
    authors: tuple[str, ...]
    english_cookies: bool

    def ui(self, key: str, english: bool = False) -> str:
        return UI["en" if english or self.language not in UI else self.language][key]


def _brand(host: str) -> str:
    # www.linuxforum.de -> Linuxforum: the label after "www.", capitalized.
    label = host.split(".")[1] if host.startswith("www.") else host.split(".")[0]
    return label[:1].upper() + label[1:]


def site_template(host: str, language: str, rng: random.Random) -> SiteTemplate:
    """Draw the layout of the site at ``host``, whose pages are in ``language``."""
    blocks = tuple(name for name, share in BLOCKS.items() if rng.random() < share)
    num_items = rng.randint(4, 7)
    menu = ("home", *sorted(rng.sample(NAV_KEYS, num_items), key=NAV_KEYS.index))
    return SiteTemplate(
        host=host,
        brand=_brand(host),
        language=language,
        blocks=blocks,
        menu=menu,
        separator=rng.choice(NAV_SEPARATORS),
        authors=tuple(rng.sample(AUTHORS, rng.randint(1, 3))),
        english_cookies=language != "en" and rng.random() < 0.3,
    )


def site_templates(hosts: dict[str, list[str]], rng: random.Random) -> dict[str, list[SiteTemplate]]:
    """language -> a template for each of its hosts, drawn in sorted order (deterministic for ``rng``)."""
    return {
        language: [site_template(host, language, rng) for host in hosts[language]]
        for language in sorted(hosts)
    }


def _tags(content: str, language: str, rng: random.Random) -> list[str]:
    """3-5 keywords of the page, as a CMS or an SEO plugin lists them."""
    if language in CJK_UI:
        words = sorted({content[k : k + 2] for k in range(len(content) - 1) if content[k : k + 2].isalpha()})
    elif language == "ko":
        words = sorted({w for w in _KO_WORD.findall(content)})
    else:
        words = sorted({w.lower() for w in _TAG_WORD.findall(content)})
    return rng.sample(words, min(len(words), rng.randint(3, 5)))


def _date(rng: random.Random) -> str:
    return f"{rng.randint(2019, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def page_boilerplate(
    site: SiteTemplate, content: str, rng: random.Random, *, extracted: bool
) -> tuple[list[str], list[str]]:
    """The lines before and after a page's ``content``: the whole page's text as a crawler's text
    dump has it, or (``extracted``) only the blocks inside the article (byline, share line, tags),
    which HTML extraction keeps.
    Every line is distinct and none holds an email, an IP address or a phone-like number."""
    cjk = site.language in CJK_UI
    head, tail = [], []
    if not extracted:
        if "skip" in site.blocks:
            head.append(site.ui("skip"))
        head.append(site.separator.join([site.brand, *(site.ui(key) for key in site.menu)]))
    if "byline" in site.blocks:
        count = rng.randint(0, 40)
        comments = f"{count}{site.ui('comments')}" if cjk else f"{count} {site.ui('comments')}"
        head.append(
            f"{site.ui('published')} {_date(rng)} {site.ui('by')} {rng.choice(site.authors)}, {comments}"
        )
    if "share" in site.blocks:
        targets = rng.sample(SHARE_TARGETS, rng.randint(3, 5))
        tail.append(f"{site.ui('share')}: {', '.join(targets)}")
    if "tags" in site.blocks:
        tags = _tags(content, site.language, rng)
        if tags:
            tail.append(f"{site.ui('tags')}: {', '.join(tags)}")
    if not extracted:
        if "pager" in site.blocks:
            tail.append(f"« {site.ui('previous')} | {site.ui('next')} »")
        if "subscribe" in site.blocks:
            tail.append(site.ui("subscribe"))
        year = rng.randint(2019, 2025)
        links = site.separator.join(site.ui(key) for key in ("privacy", "terms", "contact"))
        tail.append(f"{links} © {year} {site.brand}. {site.ui('rights')}.")
        if "cookies" in site.blocks:
            english = site.english_cookies
            tail.append(
                f"{site.ui('settings', english)} {site.ui('accept', english)} {site.ui('cookies', english)}"
            )
    lines = set(content.split("\n"))
    return [line for line in head if line not in lines], [line for line in tail if line not in lines]


def with_boilerplate(content: str, head: list[str], tail: list[str]) -> str:
    """The page's text: the head lines as one block, the content, the tail lines as one block."""
    return "\n\n".join(block for block in ("\n".join(head), content, "\n".join(tail)) if block)


def page_chrome_html(site: SiteTemplate) -> tuple[str, str]:
    """The HTML before and after a WARC page's ``<main>``: header, menu, sidebar, footer, cookie
    banner. HTML extraction drops all of it, as it drops a real page's chrome."""
    link = '<a href="/{0}/">{1}</a>'
    menu = site.separator.join(link.format(key, html.escape(site.ui(key))) for key in site.menu)
    before = (
        f'<a class="skip" href="#main">{html.escape(site.ui("skip"))}</a>\n' if "skip" in site.blocks else ""
    ) + f'<header><a href="/">{html.escape(site.brand)}</a></header>\n<nav>{menu}</nav>\n'
    sidebar = "".join(f"<li>{link.format(key, html.escape(site.ui(key)))}</li>" for key in NAV_KEYS[:4])
    after = (
        f"<aside><h2>{html.escape(site.ui('popular'))}</h2><ul>{sidebar}</ul></aside>\n"
        f'<footer><p>© 2025 {html.escape(site.brand)} · <a href="/privacy/">{html.escape(site.ui("privacy"))}'
        f'</a> · <a href="/terms/">{html.escape(site.ui("terms"))}</a></p></footer>\n'
    )
    if "cookies" in site.blocks:
        english = site.english_cookies
        after += (
            f'<div id="cookie-consent"><p>{html.escape(site.ui("cookies", english))}</p>'
            f"<button>{html.escape(site.ui('accept', english))}</button></div>\n"
        )
    return before, after
