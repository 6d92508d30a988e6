//! Malformed and tricky SIP on the wire (issue 9 acceptance): every case of RFC 4475 that
//! makes sense for a proxy, plus the pitfalls of `notes/sip-stack.md`, each sent to the real
//! server over UDP and over TCP. Each must get what the RFCs ask of a stateful proxy that is
//! also the line's registrar: the status code, silence, or normal handling. Afterwards the
//! process must still answer OPTIONS, the status API must have counted the malformed ones,
//! and a normal call (sipp trunk → adapter → sipp phone) must work.
//!
//! Templates are written with `\n` (sent as CRLF) and these placeholders:
//! `{SRV}` the adapter's address, `{HOST}` our socket's address (top Via sent-by), `{T}` the
//! transport token, `{N}` a per-run unique token (Call-IDs, branches, tags), `{CL}` the body
//! length. Numbers are made up (0134-22-…, 090-…); our line is 0120-000-000 / 0134-00-0000.

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::rig::wait;
use common::sipp::{self, Sipp};
use common::{backends, TestApp};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// How long "no answer" is listened for.
const QUIET: Duration = Duration::from_millis(300);
/// How long an expected answer may take.
const ANSWER: Duration = Duration::from_secs(2);
/// The trunk's address in the shipped sip-config.
const TRUNK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// An address that is not the trunk (loopback, so it is routable here).
const OUTSIDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

// ---- RFC 4475 §3.1.1: valid messages (modelled on the RFC text, aimed at our line) ----------

// RFC 4475 §3.1.1.1 wsinv: tortuous INVITE (case, LWS, folding, compact, combined Via) to our line.
const WSINV: &str = r#"INVITE sip:0134000000@{SRV} SIP/2.0
TO :
 sip:0134000000@{SRV} ;   newparam    = 1918181833n
from   : "Otaru \"City\" Hall" <sip:0134229999@trunk.example.net>
  ;
  tag = 98asjd8{N}
MaX-fOrWaRdS: 0068
Call-ID: wsinv.{N}.ndaksdj@192.0.2.1
Content-Length   : {CL}
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /{T}
    {HOST};rport;branch=390skdjuw{N}
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:{SRV};lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.net   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \"\"" <sip:0134229999@192.0.2.5> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.3
s=-
c=IN IP4 192.0.2.4
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

// RFC 4475 §3.1.1.2 intmeth: unknown method of every token character, odd URI, NUL/BEL in To.
const INTMETH: &str = "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bK-.!%66*_+`'~{N}
To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@madoguchi.example.jp>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.net>;fromParam''~+*_!.-%=\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}\";tag=_token~1'+`*%!-.{N}
Call-ID: intmeth.{N}.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{
Max-Forwards: 255
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
extensionHeader-!.%*+_`'~: \u{feff}\u{5927}\u{505c}\u{96fb}
Content-Length: 0

";

// RFC 4475 §3.1.1.3 esc01: escaped characters in URIs; the Request-URI user is our line, %-encoded.
const ESC01: &str = "INVITE sip:%30%31%32%30%30%30%30%30%30%30@{SRV} SIP/2.0
To: sip:%30120000000@{SRV}
From: <sip:%30%39%30%30%30%30%30%31%31%31%31@trunk.example.net>;tag=d3kx{N}
Max-Forwards: 87
i: esc01.{N}.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/{T} {HOST};rport;branch=z9hG4bKkdjuw{N}
C: application/sdp
Contact:
  <sip:cal%6Cer@{HOST};%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: {CL}

v=0
o=- 1 1 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 5000 RTP/AVP 0
";

// RFC 4475 §3.1.1.4 escnull: REGISTER with %00 in To/From/Contact users (valid: a challenge).
const ESCNULL: &str = "REGISTER sip:{SRV} SIP/2.0
To: sip:null-%00-null@{SRV}
From: sip:null-%00-null@{SRV};tag=839923423{N}
Max-Forwards: 70
Call-ID: escnull.{N}.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/{T} {HOST};rport;branch=z9hG4bKkdjuw{N}
Contact: <sip:%00@host5.example.net>
Contact: <sip:%00%00@host5.example.net>
L:0

";

// RFC 4475 §3.1.1.5 esc02: escapes in the method make it an unknown method, not REGISTER.
const ESC02: &str = "RE%47IST%45R sip:{SRV} SIP/2.0
To: \"%Z%45\" <sip:resource@{SRV}>
From: \"%Z%45\" <sip:resource@{SRV}>;tag=f232jadfj23{N}
Call-ID: esc02.{N}.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/{T} {HOST};rport;branch=z9hG4bK209%fzsnel234{N}
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.net>
C%6Fntact: <sip:alias2@host2.example.net>
Contact: <sip:alias3@host3.example.net>
l: 0

";

// RFC 4475 §3.1.1.6 lwsdisp: no LWS between display name and <.
const LWSDISP: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
To: sip:0120000000@{SRV}
From: caller<sip:caller@example.net>;tag=323{N}
Max-Forwards: 70
Call-ID: lwsdisp.{N}.1234abcd@funky.example.net
CSeq: 60 OPTIONS
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
l: 0

";

// RFC 4475 §3.1.1.7 longreq: long values (Call-ID, tag, display name, 40 Vias) on an INVITE to our line.
fn longreq() -> String {
    let mut s = format!(
        "INVITE sip:0120000000@{{SRV}} SIP/2.0\n\
         Via: SIP/2.0/{{T}} {{HOST}};branch=z9hG4bKlong{{N}}\n\
         To: \"{dn}\" <sip:0120000000@{{SRV}}>\n\
         From: <sip:0134229999@trunk.example.net>;tag={tag}{{N}}\n\
         Call-ID: longreq.{{N}}.{cid}\n\
         CSeq: 17 INVITE\n\
         Max-Forwards: 70\n\
         X-Unknown-Long: {x}\n",
        dn = "窓口".repeat(200),
        tag = "t".repeat(1000),
        cid = "c".repeat(2000),
        x = "x".repeat(4000),
    );
    for i in 0..40 {
        s.push_str(&format!(
            "Via: SIP/2.0/TCP sip{i}.example.net;branch=z9hG4bK{i:03}{}\n",
            "b".repeat(100)
        ));
    }
    s.push_str("Content-Length: 0\n\n");
    s
}

// RFC 4475 §3.1.1.8 dblreq: a REGISTER (Content-Length 0) followed by an INVITE in the same bytes.
const DBLREQ: &str = "REGISTER sip:{SRV} SIP/2.0
To: sip:j.user@{SRV}
From: sip:j.user@{SRV};tag=43251j3j324{N}
Max-Forwards: 8
I: dblreq.{N}.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.net
CSeq: 8 REGISTER
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw23492{N}
Content-Length: 0


INVITE sip:0120000000@{SRV} SIP/2.0
t: sip:0120000000@{SRV}
From: sip:0134229999@trunk.example.net;tag=141334{N}
Max-Forwards: 8
Call-ID: dblreq.{N}.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw380234{N}
Content-Type: application/sdp
Content-Length: 0

";

// RFC 4475 §3.1.1.9 semiuri: semicolon-separated parameters in the Request-URI user part.
const SEMIURI: &str = "OPTIONS sip:0120000000;par=u%40example.net@{SRV} SIP/2.0
To: sip:j_user@{SRV}
From: sip:caller@example.net;tag=33242{N}
Max-Forwards: 3
Call-ID: semiuri.{N}.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
l: 0

";

// RFC 4475 §3.1.1.10 transports: Vias with SCTP, TLS and an unknown transport.
const TRANSPORTS: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
To: sip:0120000000@{SRV}
From: <sip:caller@example.net>;tag=323{N}
Max-Forwards: 70
Call-ID: transports.{N}.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
Via: SIP/2.0/SCTP t2.example.net;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.net;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.net;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.net;branch=z9hG4bK0a9idfnee
l: 0

";

// RFC 4475 §3.1.1.11 mpart01: MESSAGE with a multipart body (a method we know but do not serve: 405).
const MPART01: &str = "MESSAGE sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bK3ef4a1{N}
Max-Forwards: 70
From: <sip:0134229999@trunk.example.net>;tag=2k3hk{N}
To: <sip:0120000000@{SRV}>
Call-ID: mpart01.{N}.0ha0isndaksdjweiafasdk3
CSeq: 1 MESSAGE
Content-Type: multipart/mixed;boundary=7a9cbec02ceef655
MIME-Version: 1.0
Content-Length: {CL}

--7a9cbec02ceef655
Content-Type: text/plain

予約の確認です
--7a9cbec02ceef655
Content-Type: application/octet-stream
Content-Transfer-Encoding: binary

0123456789
--7a9cbec02ceef655--
";

// RFC 4475 §3.1.1.12 unreason: a 200 with a UTF-8 reason phrase, matching no transaction: dropped.
const UNREASON: &str = "SIP/2.0 200 = 2**3 * 5**2 \u{43d}\u{43e} \u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{43d}\u{43e}\u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{442}\u{44c} - \u{43f}\u{440}\u{43e}\u{441}\u{442}\u{43e}\u{435}
Via: SIP/2.0/{T} 192.0.2.198;branch=z9hG4bK1324923{N}
Call-ID: unreason.{N}.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:0134229999@trunk.example.net;tag=11141343
To: sip:0120000000@{SRV};tag=2229
Content-Length: 0

";

// RFC 4475 §3.1.1.13 noreason: a 100 with an empty reason phrase, matching no transaction: dropped.
const NOREASON: &str = "SIP/2.0 100 
Via: SIP/2.0/{T} 192.0.2.105;branch=z9hG4bK2398ndaoe{N}
Call-ID: noreason.{N}.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:0134229999@trunk.example.net>;tag=39ansfi3
To: <sip:0120000000@{SRV}>;tag=902jndnke3
Content-Length: 0

";

// ---- RFC 4475 §3.1.2: invalid messages -----------------------------------------------------

// RFC 4475 §3.1.2.1 badinv01: extraneous ;;,;,, in Via and ;;;; in Contact: 400.
const BADINV01: &str = "INVITE sip:0120000000@{SRV} SIP/2.0
To: sip:0120000000@{SRV}
From: sip:caller@example.net;tag=134161461246{N}
Max-Forwards: 7
Call-ID: badinv01.{N}.0ha0isndaksdjasdf3234nas
CSeq: 8 INVITE
Via: SIP/2.0/{T} {HOST};;,;,,
Contact: \"Joe\" <sip:joe@example.net>;;;;
Content-Length: 0

";

// RFC 4475 §3.1.2.2 clerr: Content-Length 9999 beyond the body: 400 on UDP; TCP waits for more.
const CLERR: &str = "INVITE sip:0120000000@{SRV} SIP/2.0
Max-Forwards: 80
To: sip:0120000000@{SRV}
From: sip:caller@example.net;tag=93942939o2{N}
Contact: <sip:caller@hungry.example.net>
Call-ID: clerr.{N}.0ha0isndaksdjweiafasdk3
CSeq: 8 INVITE
Via: SIP/2.0/{T} {HOST};branch=z9hG4bK-39234-23523{N}
Content-Type: application/sdp
Content-Length: 9999

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.155
";

// RFC 4475 §3.1.2.3 ncl: negative Content-Length: 400 (TCP: framing lost, closed after the 400).
const NCL: &str = "INVITE sip:0120000000@{SRV} SIP/2.0
Max-Forwards: 254
To: sip:0120000000@{SRV}
From: sip:caller@example.net;tag=32394234{N}
Call-ID: ncl.{N}.0ha0isndaksdj2193423r542w35
CSeq: 0 INVITE
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
Contact: <sip:caller@example53.example.net>
Content-Type: application/sdp
Content-Length: -999

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.53
";

// RFC 4475 §3.1.2.4 scalar02: CSeq, Max-Forwards, Expires beyond their ranges: 400.
const SCALAR02: &str = "REGISTER sip:{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKzzxdiwo34sw{N};received=192.0.2.129
To: <sip:op9@{SRV}>
From: <sip:op9@{SRV}>;tag=239232jh3{N}
CSeq: 36893488147419103232 REGISTER
Call-ID: scalar02.{N}.23o0pd9vanlq3wnrlnewofjas9ui32
Max-Forwards: 300
Expires: 1000000000000000000000000000000000000000000000000000000000000
Contact: <sip:op9@host129.example.net>
  ;expires=280297596632815
Content-Length: 0

";

// RFC 4475 §3.1.2.5 scalarlg: a response with out-of-range CSeq and Retry-After: dropped silently.
const SCALARLG: &str = "SIP/2.0 503 Service Unavailable
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKzzxdiwo34sw{N};received=192.0.2.129
To: <sip:0120000000@{SRV}>
From: <sip:0134229999@trunk.example.net>;tag=2easdjfejw
CSeq: 9292394834772304023312 OPTIONS
Call-ID: scalarlg.{N}.noase0of0234hn2qofoaf0232aewf2394r
Retry-After: 949302838503028349304023988
Warning: 1812 overture \"In Progress\"
Content-Length: 0

";

// RFC 4475 §3.1.2.6 quotbal: unterminated quoted string in To: 400.
const QUOTBAL: &str = "INVITE sip:0120000000@{SRV} SIP/2.0
To: \"Mr. J. User <sip:j.user@{SRV}>
From: sip:caller@example.net;tag=93334{N}
Max-Forwards: 10
Call-ID: quotbal.{N}.aksdj
Contact: <sip:caller@host59.example.net>
CSeq: 0 INVITE
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw39234{N}
Content-Type: application/sdp
Content-Length: 0

";

// RFC 4475 §3.1.2.7 ltgtruri: <> around the Request-URI: 400.
const LTGTRURI: &str = "INVITE <sip:0120000000@{SRV}> SIP/2.0
To: sip:0120000000@{SRV}
From: sip:caller@example.net;tag=39291{N}
Max-Forwards: 23
Call-ID: ltgtruri.{N}.1@192.0.2.5
CSeq: 1 INVITE
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
Content-Length: 0

";

// RFC 4475 §3.1.2.8 lwsruri: LWS inside the Request-URI: 400.
const LWSRURI: &str = "INVITE sip:0120000000@{SRV}; lr SIP/2.0
To: sip:0120000000@{SRV};tag=3xfe-9921883-z9f
From: sip:caller@example.net;tag=231413434{N}
Max-Forwards: 5
Call-ID: lwsruri.{N}.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
CSeq: 2130706432 INVITE
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw2395{N}
Content-Length: 0

";

// RFC 4475 §3.1.2.9 lwsstart: several spaces between the Request-Line elements: 400.
const LWSSTART: &str = "INVITE  sip:0120000000@{SRV}  SIP/2.0
Max-Forwards: 8
To: sip:0120000000@{SRV}
From: sip:caller@example.net;tag=8814{N}
Call-ID: lwsstart.{N}.dfknq234oi243099adsdfnawe3@example.net
CSeq: 1893884 INVITE
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw3923{N}
Content-Length: 0

";

// RFC 4475 §3.1.2.10 trws: trailing space after SIP/2.0 in the Request-Line: 400.
const TRWS: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0 
Max-Forwards: 1
To: sip:0120000000@{SRV}
From: sip:caller@example.net;tag=2342{N}
Call-ID: trws.{N}.oij4asdfnq234ndfaj2kj3f
CSeq: 1 OPTIONS
Via: SIP/2.0/{T} {HOST};branch=z9hG4bK299342093{N}
Content-Length: 0

";

// RFC 4475 §3.1.2.11 escruri: escaped headers (?Route=) in the Request-URI: 400.
const ESCRURI: &str = "INVITE sip:0120000000@{SRV}?Route=%3Csip:example.net%3E SIP/2.0
To: sip:0120000000@{SRV}
From: sip:caller@example.net;tag=341518{N}
Max-Forwards: 7
Contact: <sip:caller@host39923.example.net>
Call-ID: escruri.{N}.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5
CSeq: 39234321 INVITE
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw2349i{N}
Content-Length: 0

";

// RFC 4475 §3.1.2.12 baddate: a non-GMT Date must not stop the call: processed (100, 480 unstaffed).
const BADDATE: &str = "INVITE sip:0120000000@{SRV} SIP/2.0
To: sip:0120000000@{SRV}
From: sip:0134229999@trunk.example.net;tag=2234923{N}
Max-Forwards: 70
Call-ID: baddate.{N}.239423mnsadf3j23lj42--sedfnm234
CSeq: 1392934 INVITE
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
Date: Fri, 01 Jan 2010 16:00:00 EST
Contact: <sip:caller@host5.example.net>
Content-Length: 0

";

// RFC 4475 §3.1.2.13 regbadct: Contact with ?headers but no <>: 400.
const REGBADCT: &str = "REGISTER sip:{SRV} SIP/2.0
To: sip:op9@{SRV}
From: sip:op9@{SRV};tag=998332{N}
Max-Forwards: 70
Call-ID: regbadct.{N}.k345asrl3fdbv@10.0.0.1
CSeq: 1 REGISTER
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
Contact: sip:op9@example.net?Route=%3Csip:sip.example.net%3E
l: 0

";

// RFC 4475 §3.1.2.14 badaspec: spaces inside <> of an addr-spec: 400.
const BADASPEC: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdju43234{N}
Max-Forwards: 70
From: \"Bell, Alexander\" <sip:a.g.bell@example.net>;tag=433423{N}
To: \"Watson, Thomas\" < sip:t.watson@{SRV} >
Call-ID: badaspec.{N}.sdf0234n2nds0a099u23h3hnnw009cdkne3
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0

";

// RFC 4475 §3.1.2.15 baddn: unquoted display names with a comma: 400.
const BADDN: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdju43234{N}
Max-Forwards: 70
From: Bell, Alexander <sip:a.g.bell@example.net>;tag=43{N}
To: Watson, Thomas <sip:t.watson@{SRV}>
Call-ID: baddn.{N}.31415@c.example.net
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0

";

// RFC 4475 §3.1.2.16 badvers: SIP/7.0: 505 Version Not Supported.
const BADVERS: &str = "OPTIONS sip:0120000000@{SRV} SIP/7.0
Max-Forwards: 70
To: sip:0120000000@{SRV}
From: sip:caller@example.net;tag=3ghsd41{N}
Call-ID: badvers.{N}.0ha0isndaksdj
CSeq: 8 OPTIONS
Via: SIP/7.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
l: 0

";

// RFC 3261 §20.42 (the RFC 4475 §3.1.2.16 class): a Via sent-protocol that is not SIP/2.0: 400.
const VIA_SIP3: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/3.0/{T} {HOST};branch=z9hG4bKvia3{N}
Max-Forwards: 70
From: <sip:0134220040@trunk.example.net>;tag=via3{N}
To: <sip:0120000000@{SRV}>
Call-ID: via-sip3.{N}@127.0.0.1
CSeq: 1 OPTIONS
Content-Length: 0

";

// The same on a lower hop: the 400 would otherwise be the only thing that hop could not read.
const VIA_LOWER_NOT_SIP2: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKvial{N}
Via: XMPP/2.0/UDP 192.0.2.7;branch=z9hG4bKlower
Max-Forwards: 70
From: <sip:0134220041@trunk.example.net>;tag=vial{N}
To: <sip:0120000000@{SRV}>
Call-ID: via-lower.{N}@127.0.0.1
CSeq: 1 OPTIONS
Content-Length: 0

";

// RFC 4475 §3.1.2.17 mismatch01: CSeq method (INVITE) differs from the Request-Line (OPTIONS): 400.
const MISMATCH01: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
To: sip:0120000000@{SRV}
From: sip:caller@example.net;tag=34525{N}
Max-Forwards: 6
Call-ID: mismatch01.{N}.sadonfo23i420jv0as0derf3j3n
CSeq: 8 INVITE
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
l: 0

";

// RFC 4475 §3.1.2.18 mismatch02: unknown method with an INVITE CSeq: 400.
const MISMATCH02: &str = "NEWMETHOD sip:0120000000@{SRV} SIP/2.0
To: sip:0120000000@{SRV}
From: sip:caller@example.net;tag=34525{N}
Max-Forwards: 6
Call-ID: mismatch02.{N}.sadonfo23i420jv0as0derf3j3n
CSeq: 8 INVITE
Contact: <sip:caller@host.example.net>
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
Content-Type: application/sdp
l: 0

";

// RFC 4475 §3.1.2.19 bigcode: a response with status code 4294967301: dropped silently.
const BIGCODE: &str = "SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/{T} {HOST};branch=z9hG4bK2398ndaoe{N}
Call-ID: bigcode.{N}.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:0134229999@trunk.example.net>;tag=39ansfi3
To: <sip:0120000000@{SRV}>;tag=902jndnke3
Content-Length: 0

";

// ---- RFC 4475 §3.2 / §3.3 / §3.4 ------------------------------------------------------------

// RFC 4475 §3.2.1 badbranch: branch is exactly the magic cookie: still a valid request (200).
const BADBRANCH: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
To: sip:0120000000@{SRV}
From: sip:caller@example.net;tag=3ghsd41{N}
Call-ID: badbranch.{N}.sadonfo23i420jv0as0derf3j3n
CSeq: 8 OPTIONS
Via: SIP/2.0/{T} {HOST};branch=z9hG4bK
Max-Forwards: 70
Content-Length: 0

";

// RFC 4475 §3.3.1 insuf: INVITE without Call-ID, From, To, Max-Forwards: 400.
const INSUF: &str = "INVITE sip:0120000000@{SRV} SIP/2.0
CSeq: 193942 INVITE
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdj.insuf{N}
Content-Type: application/sdp
l: 0

";

// RFC 4475 §3.3.2 unkscm: Request-URI with an unknown scheme: 416 Unsupported URI Scheme.
const UNKSCM: &str = "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0
To: sip:0120000000@{SRV}
From: sip:caller@example.net;tag=384{N}
Max-Forwards: 3
Call-ID: unkscm.{N}.nasdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw39234{N}
Content-Length: 0

";

// RFC 4475 §3.3.3 novelsc: Request-URI with a novel scheme (soap.beep): 416.
const NOVELSC: &str = "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0
To: sip:0120000000@{SRV}
From: sip:caller@example.net;tag=384{N}
Max-Forwards: 3
Call-ID: novelsc.{N}.asdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw39234{N}
Content-Length: 0

";

// RFC 4475 §3.3.4 unksm2: REGISTER whose To is not a SIP URI: a registrar answers 400.
const UNKSM2: &str = "REGISTER sip:{SRV} SIP/2.0
To: isbn:2983792873
From: <http://www.example.net>;tag=3234233{N}
Call-ID: unksm2.{N}.daksdj@hyphenated-host.example.net
CSeq: 234902 REGISTER
Max-Forwards: 70
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
Contact: <name:John_Smith>
l: 0

";

// RFC 4475 §3.3.5 bext01: unknown Require/Proxy-Require options: 420 Bad Extension + Unsupported.
const BEXT01: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
To: sip:0120000000@{SRV}
From: sip:caller@example.net;tag=242etr{N}
Max-Forwards: 6
Call-ID: bext01.{N}.0ha0isndaksdj
Require: nothingSupportsThis, nothingSupportsThisEither
Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis
CSeq: 8 OPTIONS
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
Content-Length: 0

";

// RFC 4475 §3.3.6 invut: INVITE with an unknown body type: a proxy routes it (100, 480 unstaffed).
const INVUT: &str = "INVITE sip:0120000000@{SRV} SIP/2.0
Contact: <sip:caller@host5.example.net>
To: sip:0120000000@{SRV}
From: sip:0134229999@trunk.example.net;tag=8392034{N}
Max-Forwards: 70
Call-ID: invut.{N}.0ha0isndaksdjadsfij34n23d
CSeq: 235448 INVITE
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
Content-Type: application/unknownformat
Content-Length: {CL}

<audio>
 <pcmu port=\"443\"/>
</audio>
";

// RFC 4475 §3.3.7 regaut01: REGISTER with an unknown authorization scheme: 401 challenge.
const REGAUT01: &str = "REGISTER sip:{SRV} SIP/2.0
To: sip:op9@{SRV}
From: sip:op9@{SRV};tag=8ty6tt{N}
Call-ID: regaut01.{N}.0ha0isndaksdj
CSeq: 9338 REGISTER
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
Max-Forwards: 70
Authorization: NoOneKnowsThisScheme opaque-data=here
Content-Length: 0

";

// RFC 4475 §3.3.8 multi01: two Call-IDs, CSeqs, Froms and Tos: 400.
const MULTI01: &str = "INVITE sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
Max-Forwards: 70
CSeq: 5 INVITE
Call-ID: multi01.{N}.98asdh@192.0.2.1
CSeq: 59 INVITE
Call-ID: multi01.{N}.98asdh@192.0.2.2
From: sip:caller@example.net;tag=3413415{N}
To: sip:0120000000@{SRV}
To: sip:0134229999@{SRV}
From: sip:caller@example.net;tag=2342354{N}
Content-Length: 0

";

// RFC 4475 §3.3.9 mcl01: three Content-Length rows: 400 (TCP: framing lost, closed).
const MCL01: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bK293423{N}
To: sip:0120000000@{SRV}
From: sip:caller@example.net;tag=3543j4{N}
Call-ID: mcl01.{N}.0ha0isndaksdj2193423r542w35
CSeq: 2 OPTIONS
Max-Forwards: 70
Content-Length: 0
Content-Length: 0
l: 0

";

// RFC 4475 §3.3.10 bcast: a 200 whose Via says received=255.255.255.255, no transaction: dropped.
const BCAST: &str = "SIP/2.0 200 OK
Via: SIP/2.0/{T} 192.0.2.198;branch=z9hG4bK1324923{N};received=255.255.255.255
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1324923
Call-ID: bcast.{N}.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:0134229999@trunk.example.net;tag=11141343
To: sip:0120000000@{SRV};tag=2229
Content-Length: {CL}
Content-Type: application/sdp
Contact: <sip:op9@192.0.2.198>

v=0
o=- 3 3 IN IP4 192.0.2.198
s=-
c=IN IP4 192.0.2.198
t=0 0
m=audio 3456 RTP/AVP 0
";

// RFC 4475 §3.3.11 zeromf: OPTIONS with Max-Forwards 0: we are its final recipient (§16.3 3): 200.
const ZEROMF: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Call-ID: zeromf.{N}.0ha0isndaksdj@192.0.2.1
CSeq: 0 OPTIONS
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw2395{N}
From: sip:caller@example.net;tag=3ghsd41{N}
To: sip:0120000000@{SRV}
Max-Forwards: 0
Content-Length: 0

";

// RFC 4475 §3.3.12 cparam01: Contact without <> whose parameter is a header parameter: 401.
const CPARAM01: &str = "REGISTER sip:{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
Max-Forwards: 70
From: sip:op9@{SRV};tag=DkfVgjkrtMwaerKKpe{N}
To: sip:op9@{SRV}
Call-ID: cparam01.{N}.70710@saturn.example.net
CSeq: 2 REGISTER
Contact: sip:+81134001234@gw1.example.net;unknownparam
l: 0

";

// RFC 4475 §3.3.13 cparam02: Contact in <> with a URI parameter: 401.
const CPARAM02: &str = "REGISTER sip:{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
Max-Forwards: 70
From: sip:op9@{SRV};tag=838293{N}
To: sip:op9@{SRV}
Call-ID: cparam02.{N}.70710@saturn.example.net
CSeq: 3 REGISTER
Contact: <sip:+81134001234@gw1.example.net;unknownparam>
l: 0

";

// RFC 4475 §3.3.14 regescrt: Contact with an escaped Route header, in <>: valid: 401.
const REGESCRT: &str = "REGISTER sip:{SRV} SIP/2.0
To: sip:op9@{SRV}
From: <sip:op9@{SRV}>;tag=8{N}
Max-Forwards: 70
Call-ID: regescrt.{N}.k345asrl3fdbv@192.0.2.1
CSeq: 14398234 REGISTER
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKkdjuw{N}
M: <sip:op9@example.net?Route=%3Csip:sip.example.net%3E>
L:0

";

// RFC 4475 §3.4.1 inv2543: RFC 2543 INVITE (no branch, no From tag, no Max-Forwards): 100, 480.
const INV2543: &str = "INVITE sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST}
From: <sip:0134229999@trunk.example.net>
To: <sip:0120000000@{SRV}>
Call-ID: inv2543.{N}.1717@trunk.example.net
CSeq: 1 INVITE
Content-Type: application/sdp
Content-Length: {CL}

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 49217 RTP/AVP 0
";

// ---- Pitfalls of notes/sip-stack.md and RFC 3261 §16 proxy checks ---------------------------

// Pitfall 1, compact headers: an OPTIONS in compact form only (v f t i l): 200.
const COMPACT_OPTIONS: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
v: SIP/2.0/{T} {HOST};branch=z9hG4bKcpt{N}
f: <sip:0134220002@trunk.example.net>;tag=cpt{N}
t: <sip:0120000000@{SRV}>
i: compact-options.{N}@127.0.0.1
CSeq: 1 OPTIONS
l: 0

";

// Pitfall 1, compact headers: an INVITE to the line in compact form (v f t i m c l): 100, 480.
const COMPACT_INVITE: &str = "INVITE sip:0120000000@{SRV} SIP/2.0
v: SIP/2.0/{T} {HOST};branch=z9hG4bKcpi{N}
f: \"0134220003\" <sip:0134220003@trunk.example.net>;tag=cpi{N}
t: <sip:0120000000@{SRV}>
i: compact-invite.{N}@127.0.0.1
CSeq: 1 INVITE
m: <sip:0134220003@{HOST}>
c: application/sdp
l: {CL}

v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 40000 RTP/AVP 0
";

// Pitfall 1, combined Via: two hops in one comma-joined row: 200, the row copied whole.
const COMBINED_VIA: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKcv{N}, SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bKcvlower
Max-Forwards: 70
From: <sip:0134220004@trunk.example.net>;tag=cv{N}
To: <sip:0120000000@{SRV}>
Call-ID: combined-via.{N}@127.0.0.1
CSeq: 1 OPTIONS
Content-Length: 0

";

// Pitfall 1, unknown method (consistent CSeq): 405 with Allow, or 501; never a parse failure.
const NEWMETHOD: &str = "NEWMETHOD sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKnm{N}
Max-Forwards: 70
From: <sip:0134220005@trunk.example.net>;tag=nm{N}
To: <sip:0120000000@{SRV}>
Call-ID: newmethod.{N}@127.0.0.1
CSeq: 1 NEWMETHOD
Content-Length: 0

";

// Pitfall 2, framing: no Content-Length: UDP body runs to the datagram's end (200); TCP 400, closed.
const NO_CL: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKnocl{N}
Max-Forwards: 70
From: <sip:0134220006@trunk.example.net>;tag=nocl{N}
To: <sip:0120000000@{SRV}>
Call-ID: nocl.{N}@127.0.0.1
CSeq: 1 OPTIONS
Content-Type: text/plain

hello
world
";

// Pitfall 2, framing: garbage Content-Length (3x): 400 (TCP: closed).
const GARBAGE_CL: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKgcl{N}
Max-Forwards: 70
From: <sip:0134220007@trunk.example.net>;tag=gcl{N}
To: <sip:0120000000@{SRV}>
Call-ID: garbagecl.{N}@127.0.0.1
CSeq: 1 OPTIONS
l: 3x

abc";

// Pitfall 2, framing: oversized Content-Length (300000, 3-byte body): UDP 400; TCP 413, closed.
const HUGE_CL: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKhcl{N}
Max-Forwards: 70
From: <sip:0134220008@trunk.example.net>;tag=hcl{N}
To: <sip:0120000000@{SRV}>
Call-ID: hugecl.{N}@127.0.0.1
CSeq: 1 OPTIONS
Content-Length: 300000

abc";

// Pitfall 2, framing: duplicate Content-Length with different values (0 and 5): 400 (TCP: closed).
const DUP_CL: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKdcl{N}
Max-Forwards: 70
From: <sip:0134220009@trunk.example.net>;tag=dcl{N}
To: <sip:0120000000@{SRV}>
Call-ID: dupcl.{N}@127.0.0.1
CSeq: 1 OPTIONS
Content-Length: 0
l: 5

hello";

// Pitfall 2, framing: Content-Length shorter than the body: UDP extra octets discarded (§18.3): 200.
const SHORT_CL: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKscl{N}
Max-Forwards: 70
From: <sip:0134220010@trunk.example.net>;tag=scl{N}
To: <sip:0120000000@{SRV}>
Call-ID: shortcl.{N}@127.0.0.1
CSeq: 1 OPTIONS
Content-Type: text/plain
Content-Length: 3

hello";

// Pitfall 2, framing: a response whose Content-Length exceeds its body: dropped (UDP); TCP waits.
const CLERR_RESPONSE: &str = "SIP/2.0 200 OK
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKclr{N}
From: <sip:0134220011@trunk.example.net>;tag=clr{N}
To: <sip:0120000000@{SRV}>;tag=d3
Call-ID: clerr-response.{N}@127.0.0.1
CSeq: 101 INVITE
Content-Length: 9999

v=0
";

// RFC 3261 §8.1.1 required headers: OPTIONS without Call-ID: 400.
const NO_CALLID: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKnci{N}
Max-Forwards: 70
From: <sip:0134220012@trunk.example.net>;tag=nci{N}
To: <sip:0120000000@{SRV}>
CSeq: 1 OPTIONS
Content-Length: 0

";

// RFC 3261 §8.1.1 required headers: OPTIONS without CSeq: 400.
const NO_CSEQ: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKncs{N}
Max-Forwards: 70
From: <sip:0134220013@trunk.example.net>;tag=ncs{N}
To: <sip:0120000000@{SRV}>
Call-ID: nocseq.{N}@127.0.0.1
Content-Length: 0

";

// RFC 3261 §8.1.1 required headers: INVITE to the line without From: 400.
const NO_FROM: &str = "INVITE sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKnfr{N}
Max-Forwards: 70
To: <sip:0120000000@{SRV}>
Call-ID: nofrom.{N}@127.0.0.1
CSeq: 1 INVITE
Content-Length: 0

";

// RFC 3261 §8.1.1 required headers: INVITE to the line without To: 400.
const NO_TO: &str = "INVITE sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKnto{N}
Max-Forwards: 70
From: <sip:0134220014@trunk.example.net>;tag=nto{N}
Call-ID: noto.{N}@127.0.0.1
CSeq: 1 INVITE
Content-Length: 0

";

// RFC 3261 §8.1.1 required headers: OPTIONS without Via: 400 to the packet's source.
const NO_VIA: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Max-Forwards: 70
From: <sip:0134220015@trunk.example.net>;tag=nvi{N}
To: <sip:0120000000@{SRV}>
Call-ID: novia.{N}@127.0.0.1
CSeq: 1 OPTIONS
Content-Length: 0

";

// RFC 3261 §20.22: negative Max-Forwards: 400.
const NEG_MF: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKnmf{N}
Max-Forwards: -1
From: <sip:0134220016@trunk.example.net>;tag=nmf{N}
To: <sip:0120000000@{SRV}>
Call-ID: negmf.{N}@127.0.0.1
CSeq: 1 OPTIONS
Content-Length: 0

";

// RFC 3261 §16.3 step 3: INVITE to our line with Max-Forwards 0: 483 Too Many Hops.
const MF0_INVITE: &str = "INVITE sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKmf0{N}
Max-Forwards: 0
From: <sip:0134220017@trunk.example.net>;tag=mf0{N}
To: <sip:0120000000@{SRV}>
Call-ID: mf0.{N}@127.0.0.1
CSeq: 1 INVITE
Content-Length: 0

";

// RFC 3261 §16.3 step 4: INVITE whose Via already holds our own address and branch: 482 Loop Detected.
const LOOP_INVITE: &str = "INVITE sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKloop{N}
Via: SIP/2.0/UDP {SRV};branch=z9hG4bKmdg1.1.2.0
Via: SIP/2.0/UDP 192.0.2.50;branch=z9hG4bKorigin{N}
Max-Forwards: 68
From: <sip:0134220018@trunk.example.net>;tag=loop{N}
To: <sip:0120000000@{SRV}>
Call-ID: loop.{N}@127.0.0.1
CSeq: 1 INVITE
Content-Length: 0

";

// Non-SIP garbage (an HTTP request): dropped without an answer (TCP: closed).
const HTTP_GARBAGE: &str = "GET /api/sip/status HTTP/1.1
Host: {SRV}
User-Agent: scanner

";

// A stray 486 matching no transaction, top Via not ours: dropped silently (§16.7 / §18.1.2).
const STRAY_486: &str = "SIP/2.0 486 Busy Here
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKstray{N}
From: <sip:0134220019@trunk.example.net>;tag=st{N}
To: <sip:0120000000@{SRV}>;tag=ph1
Call-ID: stray486.{N}@127.0.0.1
CSeq: 1 INVITE
Content-Length: 0

";

// A stray 200 with our Via on top (combined with the next hop's): no transaction and no call of
// ours, so it is dropped, not relayed to the next Via (issue 13 item 2: no open reflector; the
// 2xx of a call we proxied is relayed to its caller, see sip_hardening). Pitfall 1, a combined
// `Via: ours, theirs` losing only ours, is covered by the wire unit tests.
const STRAY_RELAY: &str = "SIP/2.0 200 OK
Via: SIP/2.0/{T} {SRV};branch=z9hG4bKmdg1.7f.3.0, SIP/2.0/{T} {HOST};branch=z9hG4bKrel{N}
From: <sip:0134220020@trunk.example.net>;tag=rel{N}
To: <sip:0120000000@{SRV}>;tag=ph2
Call-ID: relay.{N}@127.0.0.1
CSeq: 1 OPTIONS
Content-Length: 0

";

// RFC 3261 §16.3 step 2: INVITE with an unknown Request-URI scheme (To is our line): 416.
const UNKSCHEME_INVITE: &str = "INVITE nobodyKnowsThisScheme:0120000000 SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKuks{N}
Max-Forwards: 70
From: <sip:0134220021@trunk.example.net>;tag=uks{N}
To: <sip:0120000000@{SRV}>
Call-ID: unkscheme-invite.{N}@127.0.0.1
CSeq: 1 INVITE
Content-Length: 0

";

// RFC 3966 tel: Request-URI with the line number in domestic format: 100, 480 unstaffed.
const TEL_INVITE: &str = "INVITE tel:0120-000-000;phone-context=+81 SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKtel{N}
Max-Forwards: 70
From: <tel:090-0000-1111;phone-context=+81>;tag=tel{N}
To: <tel:0120-000-000;phone-context=+81>
Call-ID: tel-invite.{N}@127.0.0.1
CSeq: 1 INVITE
Content-Length: 0

";

// IPv6 Request-URI (RFC 5118) naming our line: 100, 480 unstaffed.
const IPV6_INVITE: &str = "INVITE sip:0120000000@[2001:db8::10]:5070;user=phone SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKv6i{N}
Max-Forwards: 70
From: \"0134220022\" <sip:0134220022@[2001:db8::9]:5062>;tag=v6i{N}
To: <sip:0120000000@[2001:db8::10]:5070>
Call-ID: ipv6-invite.{N}@[2001:db8::9]
CSeq: 1 INVITE
Contact: <sip:0134220022@[2001:db8::9]:5062>
Content-Length: 0

";

// IPv6 Request-URI and From/Contact (RFC 5118) on OPTIONS: 200.
const IPV6_OPTIONS: &str = "OPTIONS sip:[2001:db8::10]:5070 SIP/2.0
To: sip:0120000000@[2001:db8::10]
From: \"Desk 3\" <sip:desk3@[2001:db8::9]:5062>;tag=81x2{N}
Via: SIP/2.0/{T} {HOST};rport;branch=z9hG4bKas3-111{N}
Call-ID: ipv6.{N}.SSG9559905523997077@hlau_4100
Max-Forwards: 70
Contact: \"Desk 3\" <sip:desk3@[2001:db8::9]:5062>
CSeq: 98176 OPTIONS
Content-Length: 0

";

// RFC 3261 §9.2 / §16.10: CANCEL matching no INVITE: 481.
const CANCEL_STRAY: &str = "CANCEL sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKcnl{N}
Max-Forwards: 70
From: <sip:0134220023@trunk.example.net>;tag=cnl{N}
To: <sip:0120000000@{SRV}>
Call-ID: cancel-stray.{N}@127.0.0.1
CSeq: 1 CANCEL
Content-Length: 0

";

// Pitfall 3 / RFC 3261 §17: an ACK matching no transaction and no dialog: never answered.
const ACK_STRAY: &str = "ACK sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKack{N}
Max-Forwards: 70
From: <sip:0134220024@trunk.example.net>;tag=ack{N}
To: <sip:0120000000@{SRV}>;tag=nobody
Call-ID: ack-stray.{N}@127.0.0.1
CSeq: 1 ACK
Content-Length: 0

";

// RFC 3261 §17 / §8.2: a malformed ACK (negative Content-Length) must not be answered either.
const ACK_MALFORMED: &str = "ACK sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKackm{N}
Max-Forwards: 70
From: <sip:0134220025@trunk.example.net>;tag=ackm{N}
To: <sip:0120000000@{SRV}>;tag=nobody
Call-ID: ack-malformed.{N}@127.0.0.1
CSeq: 1 ACK
Content-Length: -1

";

// RFC 3261 §12.2.2: BYE for a dialog we do not know: 481.
const BYE_STRAY: &str = "BYE sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKbye{N}
Max-Forwards: 70
From: <sip:0134220026@trunk.example.net>;tag=bye{N}
To: <sip:0120000000@{SRV}>;tag=nobody
Call-ID: bye-stray.{N}@127.0.0.1
CSeq: 2 BYE
Content-Length: 0

";

// Trunk filter (issue 9): a well-formed INVITE to the line from 127.0.0.2 (not the trunk): 403.
const OUTSIDER_INVITE: &str = "INVITE sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKout{N}
Max-Forwards: 70
From: <sip:0134220027@elsewhere.example.net>;tag=out{N}
To: <sip:0120000000@{SRV}>
Call-ID: outsider.{N}@127.0.0.2
CSeq: 1 INVITE
Content-Length: 0

";

// Routing (issue 9): an INVITE for a number that is not our line (0134-99-0000): 404.
const NOT_OUR_LINE: &str = "INVITE sip:0134990000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKnol{N}
Max-Forwards: 70
From: <sip:0134220028@trunk.example.net>;tag=nol{N}
To: <sip:0134990000@{SRV}>
Call-ID: not-our-line.{N}@127.0.0.1
CSeq: 1 INVITE
Content-Length: 0

";

// RFC 3261 §16.3 step 5: INVITE to the line with an unknown Proxy-Require option: 420 + Unsupported.
const PROXY_REQUIRE_INVITE: &str = "INVITE sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKprq{N}
Max-Forwards: 70
From: <sip:0134220029@trunk.example.net>;tag=prq{N}
To: <sip:0120000000@{SRV}>
Call-ID: proxy-require.{N}@127.0.0.1
CSeq: 1 INVITE
Proxy-Require: noProxiesSupportThis
Content-Length: 0

";

// RFC 3261 §7.3.1: tabs, folded values, no space after the colon: 200.
const FOLDED: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKfold{N},
\t SIP/2.0/UDP 192.0.2.8;branch=z9hG4bKfold2
Max-Forwards:\t70
From:\t<sip:0134220030@trunk.example.net>
\t;tag=fold{N}
To:<sip:0120000000@{SRV}>
Subject   :\t  predicted
 folded
\t subject
Call-ID:folded.{N}@127.0.0.1
CSeq:   7    OPTIONS
Content-Length:0

";

// RFC 3261 §7.3: a header line without a colon: 400.
const NO_COLON: &str = "INVITE sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKnocolon{N}
Max-Forwards: 70
From: <sip:0134220031@trunk.example.net>;tag=nc{N}
To: <sip:0120000000@{SRV}>
This line is not a header
Call-ID: nocolon.{N}@127.0.0.1
CSeq: 1 INVITE
Content-Length: 0

";

// RFC 3261 §20.16: CSeq without a method: 400.
const CSEQ_NO_METHOD: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKcsq{N}
Max-Forwards: 70
From: <sip:0134220032@trunk.example.net>;tag=csq{N}
To: <sip:0120000000@{SRV}>
Call-ID: cseq-no-method.{N}@127.0.0.1
CSeq: 1
Content-Length: 0

";

// RFC 3261 §7 (CRLF line ends): an OPTIONS with bare LF only has no header end: dropped.
const LF_ONLY: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKlf{N}
Max-Forwards: 70
From: <sip:0134220033@trunk.example.net>;tag=lf{N}
To: <sip:0120000000@{SRV}>
Call-ID: lf-only.{N}@127.0.0.1
CSeq: 1 OPTIONS
Content-Length: 0

";

// Size limits: a ~60 KB datagram with one 59 KB header: 513 Message Too Large (§21.5.14).
fn huge() -> String {
    format!(
        "OPTIONS sip:0120000000@{{SRV}} SIP/2.0\n\
         Via: SIP/2.0/{{T}} {{HOST}};branch=z9hG4bKhuge{{N}}\n\
         Max-Forwards: 70\n\
         From: <sip:0134220034@trunk.example.net>;tag=huge{{N}}\n\
         To: <sip:0120000000@{{SRV}}>\n\
         Call-ID: huge.{{N}}@127.0.0.1\n\
         CSeq: 1 OPTIONS\n\
         X-Padding: {}\n\
         Content-Length: 0\n\n",
        "p".repeat(59_000)
    )
}

/// A normal OPTIONS from the trunk (the follow-up on a kept TCP connection, and the
/// after-the-batch liveness check).
const OPTIONS_OK: &str = "OPTIONS sip:0120000000@{SRV} SIP/2.0
Via: SIP/2.0/{T} {HOST};branch=z9hG4bKok{N}
Max-Forwards: 70
From: <sip:0134220099@trunk.example.net>;tag=ok{N}
To: <sip:0120000000@{SRV}>
Call-ID: options-ok.{N}@127.0.0.1
CSeq: 1 OPTIONS
Content-Length: 0

";

// ---- The case table ------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tr {
    Udp,
    Tcp,
}

/// What the TCP connection must do after the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Stays open: a normal OPTIONS on it still gets 200.
    Keep,
    /// Closed by the adapter (framing lost).
    Close,
    /// Either (the RFC does not say).
    Any,
}

/// An extra check on the last final response.
type Check = fn(&Sip) -> Result<(), String>;

/// What one message must get.
#[derive(Debug, Clone)]
struct Want {
    /// The final responses, in order; each position lists the acceptable codes. Empty: silence.
    finals: Vec<Vec<u16>>,
    /// A 100 Trying must come before the last final.
    trying: bool,
    /// After the finals, nothing more may come for a while.
    quiet_after: bool,
    /// TCP only: what happens to the connection.
    end: End,
    /// Extra checks on the last final.
    check: Option<Check>,
}

impl Want {
    fn describe(&self) -> String {
        if self.finals.is_empty() {
            return "no answer".into();
        }
        let f: Vec<String> = self
            .finals
            .iter()
            .map(|s| s.iter().map(u16::to_string).collect::<Vec<_>>().join("|"))
            .collect();
        format!("{}{}", if self.trying { "100, " } else { "" }, f.join(", "))
    }
    fn close(mut self) -> Self {
        self.end = End::Close;
        self
    }
    fn any_end(mut self) -> Self {
        self.end = End::Any;
        self
    }
    fn quiet(mut self) -> Self {
        self.quiet_after = true;
        self
    }
    fn then(mut self, codes: &[u16], trying: bool) -> Self {
        self.finals.push(codes.to_vec());
        self.trying |= trying;
        self
    }
    fn check(mut self, f: Check) -> Self {
        self.check = Some(f);
        self
    }
}

/// A final status. Stateless rejections of unparseable requests may close TCP (not specified).
fn answer(code: u16) -> Want {
    one_of(&[code])
}

fn one_of(codes: &[u16]) -> Want {
    let stateless = codes.iter().any(|c| matches!(c, 400 | 413 | 505 | 513));
    Want {
        finals: vec![codes.to_vec()],
        trying: false,
        quiet_after: false,
        end: if stateless { End::Any } else { End::Keep },
        check: None,
    }
}

/// An INVITE to the line while no phone is registered: 100 Trying, then 480 (unstaffed).
fn unstaffed() -> Want {
    Want {
        trying: true,
        ..answer(480)
    }
}

/// No answer at all.
fn silence() -> Want {
    Want {
        finals: Vec::new(),
        trying: false,
        quiet_after: false,
        end: End::Keep,
        check: None,
    }
}

enum Msg {
    /// A template (placeholders, `\n` → CRLF).
    Text(&'static str),
    /// A template built at run time.
    Gen(fn() -> String),
    /// Raw bytes.
    Raw(fn(&Ctx) -> Vec<u8>),
}

struct Case {
    name: &'static str,
    msg: Msg,
    udp: Want,
    tcp: Want,
    src: Ipv4Addr,
}

fn case(name: &'static str, msg: Msg, want: Want) -> Case {
    Case {
        name,
        msg,
        udp: want.clone(),
        tcp: want,
        src: TRUNK,
    }
}

impl Case {
    fn tcp(mut self, want: Want) -> Self {
        self.tcp = want;
        self
    }
    fn sent_from(mut self, src: Ipv4Addr) -> Self {
        self.src = src;
        self
    }
}

use Msg::{Gen, Raw, Text};

fn has_allow_if_405(r: &Sip) -> Result<(), String> {
    if r.status == 405 && r.header("allow").is_none() {
        return Err("405 without Allow (RFC 3261 §8.2.1 MUST)".into());
    }
    Ok(())
}

fn challenged(r: &Sip) -> Result<(), String> {
    if r.header("www-authenticate")
        .is_some_and(|v| v.starts_with("Digest"))
    {
        Ok(())
    } else {
        Err("401 without a Digest WWW-Authenticate".into())
    }
}

fn has_unsupported(r: &Sip) -> Result<(), String> {
    match r.header("unsupported") {
        Some(v) if v.contains("noProxiesSupportThis") => Ok(()),
        other => Err(format!(
            "420 must list the option in Unsupported (§8.2.2.3), got {other:?}"
        )),
    }
}

fn via_row_kept_whole(r: &Sip) -> Result<(), String> {
    let vias = r.headers_named("via");
    if vias.len() == 1 && vias[0].contains("192.0.2.9:5070") {
        Ok(())
    } else {
        Err(format!("Via rows not copied as sent: {vias:?}"))
    }
}

fn cases() -> Vec<Case> {
    let tcp_keepalive: fn(&Ctx) -> Vec<u8> = |ctx| match ctx.tr {
        // An empty datagram is the UDP keep-alive; on TCP the double-CRLF ping (RFC 5626).
        Tr::Udp => Vec::new(),
        Tr::Tcp => b"\r\n\r\n".to_vec(),
    };
    let binary: fn(&Ctx) -> Vec<u8> = |_| {
        let mut x: u32 = 0x2545_f491;
        (0..1500)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 8) as u8
            })
            .filter(|b| *b != b'\r')
            .collect()
    };
    let lf_only: fn(&Ctx) -> Vec<u8> = |ctx| fill(LF_ONLY, ctx, false);
    vec![
        // RFC 4475 §3.1.1: valid, if odd: normal handling.
        case("3.1.1.1 wsinv", Text(WSINV), unstaffed()),
        case(
            "3.1.1.2 intmeth",
            Text(INTMETH),
            one_of(&[405, 501]).check(has_allow_if_405),
        ),
        case(
            "3.1.1.3 esc01 (escaped line number)",
            Text(ESC01),
            unstaffed(),
        ),
        case(
            "3.1.1.4 escnull",
            Text(ESCNULL),
            answer(401).check(challenged),
        ),
        case(
            "3.1.1.5 esc02 (escaped method)",
            Text(ESC02),
            one_of(&[405, 501]).check(has_allow_if_405),
        ),
        case("3.1.1.6 lwsdisp", Text(LWSDISP), answer(200)),
        case("3.1.1.7 longreq", Gen(longreq), unstaffed()),
        case("3.1.1.8 dblreq", Text(DBLREQ), answer(401).quiet())
            // On a stream the INVITE after the REGISTER is a message of its own.
            .tcp(answer(401).then(&[480], true)),
        case("3.1.1.9 semiuri", Text(SEMIURI), answer(200)),
        case("3.1.1.10 transports", Text(TRANSPORTS), answer(200)),
        case("3.1.1.11 mpart01 (MESSAGE)", Text(MPART01), answer(405)),
        case("3.1.1.12 unreason (stray 200)", Text(UNREASON), silence()),
        case("3.1.1.13 noreason (stray 100)", Text(NOREASON), silence()),
        // RFC 4475 §3.1.2: invalid: 400 (505), responses dropped.
        case("3.1.2.1 badinv01", Text(BADINV01), answer(400)),
        case("3.1.2.2 clerr", Text(CLERR), answer(400))
            // On a stream a long Content-Length just means "more to come" (RFC 4475 §3.1.2.2).
            .tcp(silence().any_end()),
        case("3.1.2.3 ncl", Text(NCL), answer(400)).tcp(answer(400).close()),
        case("3.1.2.4 scalar02", Text(SCALAR02), answer(400)),
        case("3.1.2.5 scalarlg", Text(SCALARLG), silence().any_end()),
        case("3.1.2.6 quotbal", Text(QUOTBAL), answer(400)),
        case("3.1.2.7 ltgtruri", Text(LTGTRURI), answer(400)),
        case("3.1.2.8 lwsruri", Text(LWSRURI), answer(400)),
        case("3.1.2.9 lwsstart", Text(LWSSTART), answer(400)),
        case("3.1.2.10 trws", Text(TRWS), answer(400)),
        case("3.1.2.11 escruri", Text(ESCRURI), answer(400)),
        case("3.1.2.12 baddate", Text(BADDATE), unstaffed()),
        case("3.1.2.13 regbadct", Text(REGBADCT), answer(400)),
        case("3.1.2.14 badaspec", Text(BADASPEC), answer(400)),
        case("3.1.2.15 baddn", Text(BADDN), answer(400)),
        case("3.1.2.16 badvers", Text(BADVERS), answer(505)),
        case("Via sent-protocol SIP/3.0", Text(VIA_SIP3), answer(400)),
        case(
            "lower Via not SIP/2.0",
            Text(VIA_LOWER_NOT_SIP2),
            answer(400),
        ),
        case("3.1.2.17 mismatch01", Text(MISMATCH01), answer(400)),
        case("3.1.2.18 mismatch02", Text(MISMATCH02), answer(400)),
        case("3.1.2.19 bigcode", Text(BIGCODE), silence().any_end()),
        // RFC 4475 §3.2-§3.4.
        case("3.2.1 badbranch", Text(BADBRANCH), answer(200)),
        case("3.3.1 insuf", Text(INSUF), answer(400)),
        case("3.3.2 unkscm", Text(UNKSCM), answer(416)),
        case("3.3.3 novelsc", Text(NOVELSC), answer(416)),
        case("3.3.4 unksm2", Text(UNKSM2), answer(400)),
        case(
            "3.3.5 bext01",
            Text(BEXT01),
            answer(420).check(has_unsupported),
        ),
        case("3.3.6 invut", Text(INVUT), unstaffed()),
        case(
            "3.3.7 regaut01",
            Text(REGAUT01),
            answer(401).check(challenged),
        ),
        case("3.3.8 multi01", Text(MULTI01), answer(400)),
        case("3.3.9 mcl01", Text(MCL01), answer(400)).tcp(answer(400).close()),
        case("3.3.10 bcast (stray 200)", Text(BCAST), silence()),
        case("3.3.11 zeromf (OPTIONS)", Text(ZEROMF), answer(200)),
        case(
            "3.3.12 cparam01",
            Text(CPARAM01),
            answer(401).check(challenged),
        ),
        case(
            "3.3.13 cparam02",
            Text(CPARAM02),
            answer(401).check(challenged),
        ),
        case(
            "3.3.14 regescrt",
            Text(REGESCRT),
            answer(401).check(challenged),
        ),
        case("3.4.1 inv2543", Text(INV2543), unstaffed()),
        // The note's pitfalls and RFC 3261 §16 proxy checks.
        case("compact OPTIONS", Text(COMPACT_OPTIONS), answer(200)),
        case("compact INVITE", Text(COMPACT_INVITE), unstaffed()),
        case(
            "combined Via row",
            Text(COMBINED_VIA),
            answer(200).check(via_row_kept_whole),
        ),
        case(
            "unknown method",
            Text(NEWMETHOD),
            one_of(&[405, 501]).check(has_allow_if_405),
        ),
        case("no Content-Length", Text(NO_CL), answer(200)).tcp(answer(400).close()),
        case("garbage Content-Length", Text(GARBAGE_CL), answer(400)).tcp(answer(400).close()),
        case("oversized Content-Length", Text(HUGE_CL), answer(400)).tcp(answer(413).close()),
        case(
            "conflicting duplicate Content-Length",
            Text(DUP_CL),
            answer(400),
        )
        .tcp(answer(400).close()),
        case(
            "Content-Length shorter than body",
            Text(SHORT_CL),
            answer(200),
        )
        .tcp(answer(200).any_end()),
        case(
            "response Content-Length beyond body",
            Text(CLERR_RESPONSE),
            silence().any_end(),
        ),
        case("missing Call-ID", Text(NO_CALLID), answer(400)),
        case("missing CSeq", Text(NO_CSEQ), answer(400)),
        case("missing From", Text(NO_FROM), answer(400)),
        case("missing To", Text(NO_TO), answer(400)),
        case("missing Via", Text(NO_VIA), answer(400)),
        case("negative Max-Forwards", Text(NEG_MF), answer(400)),
        case("CSeq without method", Text(CSEQ_NO_METHOD), answer(400)),
        case("header line without colon", Text(NO_COLON), answer(400)),
        case("folded headers and tabs", Text(FOLDED), answer(200)),
        case("Max-Forwards 0 INVITE", Text(MF0_INVITE), answer(483)),
        case("Via loop", Text(LOOP_INVITE), answer(482)),
        case(
            "Proxy-Require",
            Text(PROXY_REQUIRE_INVITE),
            answer(420).check(has_unsupported),
        ),
        case("unknown scheme INVITE", Text(UNKSCHEME_INVITE), answer(416)),
        case("tel Request-URI", Text(TEL_INVITE), unstaffed()),
        case("IPv6 Request-URI INVITE", Text(IPV6_INVITE), unstaffed()),
        case("IPv6 OPTIONS", Text(IPV6_OPTIONS), answer(200)),
        case("not our line", Text(NOT_OUR_LINE), answer(404)),
        // (The TCP follow-up OPTIONS would come from the outsider too, and get 403: not checked.)
        case(
            "INVITE from outside the trunk",
            Text(OUTSIDER_INVITE),
            answer(403).any_end(),
        )
        .sent_from(OUTSIDER),
        case("stray CANCEL", Text(CANCEL_STRAY), answer(481)),
        case("stray BYE", Text(BYE_STRAY), answer(481)),
        case("stray ACK", Text(ACK_STRAY), silence()),
        case("malformed ACK", Text(ACK_MALFORMED), silence()).tcp(silence().close()),
        case("stray 486", Text(STRAY_486), silence()),
        case(
            "stray 200 with our Via on top",
            Text(STRAY_RELAY),
            silence(),
        ),
        case("HTTP request", Text(HTTP_GARBAGE), silence()).tcp(silence().close()),
        case("binary garbage", Raw(binary), silence().any_end()),
        case("empty datagram / CRLF ping", Raw(tcp_keepalive), silence()),
        case("bare LF line ends", Raw(lf_only), silence().any_end()),
        case("huge message", Gen(huge), answer(513)),
    ]
}

// ---- Building messages ---------------------------------------------------------------------

struct Ctx {
    tr: Tr,
    host: SocketAddr,
    srv: SocketAddr,
    n: String,
}

/// Fills a template; with `crlf`, `\n` becomes CRLF. `{CL}` is the body length in octets.
fn fill(template: &str, ctx: &Ctx, crlf: bool) -> Vec<u8> {
    let t = match ctx.tr {
        Tr::Udp => "UDP",
        Tr::Tcp => "TCP",
    };
    let mut s = template
        .replace("{SRV}", &ctx.srv.to_string())
        .replace("{HOST}", &ctx.host.to_string())
        .replace("{T}", t)
        .replace("{N}", &ctx.n);
    if crlf {
        s = s.replace('\n', "\r\n");
    }
    let sep = if crlf { "\r\n\r\n" } else { "\n\n" };
    let body_len = s.find(sep).map_or(0, |i| s.len() - i - sep.len());
    s.replace("{CL}", &body_len.to_string()).into_bytes()
}

fn build(msg: &Msg, ctx: &Ctx) -> Vec<u8> {
    match msg {
        Text(t) => fill(t, ctx, true),
        Gen(f) => fill(&f(), ctx, true),
        Raw(f) => f(ctx),
    }
}

// ---- A small SIP reader for the test side --------------------------------------------------

/// A message read back from the adapter.
#[derive(Debug, Clone)]
struct Sip {
    /// Status code; 0 for a request.
    status: u16,
    start: String,
    /// (lower-case full name, unfolded value), compact names expanded.
    headers: Vec<(String, String)>,
}

impl Sip {
    fn parse(raw: &[u8]) -> Sip {
        let text = String::from_utf8_lossy(raw);
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        let mut lines = head.split("\r\n");
        let start = lines.next().unwrap_or_default().to_string();
        let status = start
            .strip_prefix("SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Sip {
            status,
            start,
            headers: parse_headers(lines),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn cseq_method(&self) -> String {
        self.header("cseq")
            .and_then(|v| v.split_whitespace().nth(1))
            .unwrap_or_default()
            .to_string()
    }
}

fn parse_headers<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let name = match name.as_str() {
            "v" => "via",
            "f" => "from",
            "t" => "to",
            "i" => "call-id",
            "l" => "content-length",
            "m" => "contact",
            "c" => "content-type",
            other => other,
        }
        .to_string();
        out.push((name, value.trim().to_string()));
    }
    out
}

/// The ACK for a non-2xx final to an INVITE we sent (RFC 3261 §17.1.1.3).
fn ack_for(request: &[u8], resp: &Sip) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(request);
    let head = text.split("\r\n\r\n").next()?;
    let mut lines = head.split("\r\n");
    let ruri = lines.next()?.split(' ').nth(1)?.to_string();
    let h = parse_headers(lines);
    let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let via = get("via")?;
    let via = via.split(',').next()?.trim().to_string();
    let cseq = get("cseq")?;
    let num = cseq.split_whitespace().next()?;
    Some(
        format!(
            "ACK {ruri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\n\
             Call-ID: {}\r\nCSeq: {num} ACK\r\nContent-Length: 0\r\n\r\n",
            get("from")?,
            resp.header("to")?,
            get("call-id")?,
        )
        .into_bytes(),
    )
}

// ---- Client connections --------------------------------------------------------------------

enum Conn {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream, Vec<u8>),
}

enum Got {
    Msg(Sip),
    Timeout,
    Closed,
}

impl Conn {
    async fn open(tr: Tr, src: Ipv4Addr, srv: SocketAddr) -> std::io::Result<Conn> {
        let local = SocketAddr::new(IpAddr::V4(src), 0);
        Ok(match tr {
            Tr::Udp => Conn::Udp(UdpSocket::bind(local).await?, srv),
            Tr::Tcp => {
                let s = TcpSocket::new_v4()?;
                s.bind(local)?;
                Conn::Tcp(s.connect(srv).await?, Vec::new())
            }
        })
    }

    fn local(&self) -> SocketAddr {
        match self {
            Conn::Udp(s, _) => s.local_addr().unwrap(),
            Conn::Tcp(s, _) => s.local_addr().unwrap(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Udp(s, to) => s.send_to(bytes, *to).await.map(|_| ()),
            Conn::Tcp(s, _) => s.write_all(bytes).await,
        }
    }

    /// The next message within `wait`; a TCP stream is framed by Content-Length.
    async fn recv(&mut self, wait: Duration) -> Got {
        let deadline = tokio::time::Instant::now() + wait;
        match self {
            Conn::Udp(s, _) => {
                let mut buf = vec![0u8; 65_536];
                loop {
                    match tokio::time::timeout_at(deadline, s.recv_from(&mut buf)).await {
                        Err(_) => return Got::Timeout,
                        // ICMP errors from earlier sends surface here; not a message.
                        Ok(Err(_)) => continue,
                        Ok(Ok((n, _))) => {
                            if buf[..n].iter().all(u8::is_ascii_whitespace) {
                                continue;
                            }
                            return Got::Msg(Sip::parse(&buf[..n]));
                        }
                    }
                }
            }
            Conn::Tcp(s, buf) => loop {
                while buf.first().is_some_and(u8::is_ascii_whitespace) {
                    buf.remove(0);
                }
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = Sip::parse(&buf[..end]);
                    let cl: usize = head
                        .header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + cl {
                        let raw: Vec<u8> = buf.drain(..end + 4 + cl).collect();
                        return Got::Msg(Sip::parse(&raw));
                    }
                }
                let mut chunk = [0u8; 16_384];
                match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
                    Err(_) => return Got::Timeout,
                    Ok(Ok(0)) | Ok(Err(_)) => return Got::Closed,
                    Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                }
            },
        }
    }
}

// ---- Running one case on one transport -----------------------------------------------------

fn show(m: &Sip) -> String {
    if m.status == 0 {
        format!("request `{}`", m.start)
    } else {
        m.start.clone()
    }
}

async fn run_one(
    case: &Case,
    want: &Want,
    tr: Tr,
    srv: SocketAddr,
    n: String,
) -> Result<(), String> {
    let mut conn = Conn::open(tr, case.src, srv)
        .await
        .map_err(|e| format!("cannot open the client socket: {e}"))?;
    let ctx = Ctx {
        tr,
        host: conn.local(),
        srv,
        n,
    };
    let bytes = build(&case.msg, &ctx);
    conn.send(&bytes)
        .await
        .map_err(|e| format!("send failed: {e}"))?;

    let mut seen: Vec<String> = Vec::new();
    if want.finals.is_empty() {
        match conn.recv(QUIET).await {
            Got::Msg(m) => return Err(format!("expected no answer, got {}", show(&m))),
            Got::Closed if want.end == End::Keep => {
                return Err("expected no answer and the connection kept, but it closed".into())
            }
            Got::Closed | Got::Timeout => {}
        }
    } else {
        let mut trying_before_last = false;
        let mut last: Option<Sip> = None;
        for (i, allowed) in want.finals.iter().enumerate() {
            let final_msg = loop {
                match conn.recv(ANSWER).await {
                    Got::Timeout => {
                        return Err(format!(
                            "expected {}, got {}",
                            want.describe(),
                            if seen.is_empty() {
                                "nothing".to_string()
                            } else {
                                format!("only [{}]", seen.join(", "))
                            }
                        ))
                    }
                    Got::Closed => {
                        return Err(format!(
                            "expected {}, connection closed after [{}]",
                            want.describe(),
                            seen.join(", ")
                        ))
                    }
                    Got::Msg(m) => {
                        seen.push(show(&m));
                        if m.status == 100 && i + 1 == want.finals.len() {
                            trying_before_last = true;
                        }
                        if m.status >= 200 || m.status == 0 {
                            break m;
                        }
                    }
                }
            };
            if !allowed.contains(&final_msg.status) {
                return Err(format!(
                    "expected {}, got [{}]",
                    want.describe(),
                    seen.join(", ")
                ));
            }
            if final_msg.cseq_method() == "INVITE"
                && final_msg.status >= 300
                && !matches!(final_msg.status, 400 | 413 | 505 | 513)
            {
                // ACK it, so the server transaction ends (its request is the last INVITE sent).
                let invite_at = find_nth_invite(&bytes, i);
                if let Some(ack) = ack_for(&bytes[invite_at..], &final_msg) {
                    let _ = conn.send(&ack).await;
                }
            }
            last = Some(final_msg);
        }
        if want.trying && !trying_before_last {
            return Err(format!(
                "expected {} (a 100 Trying first), got [{}]",
                want.describe(),
                seen.join(", ")
            ));
        }
        if let (Some(check), Some(last)) = (want.check, &last) {
            check(last)?;
        }
        if want.quiet_after {
            if let Got::Msg(m) = conn.recv(QUIET).await {
                return Err(format!(
                    "expected nothing after [{}], got {}",
                    seen.join(", "),
                    show(&m)
                ));
            }
        }
    }

    if tr == Tr::Tcp {
        match want.end {
            End::Any => {}
            End::Close => match conn.recv(Duration::from_secs(1)).await {
                Got::Closed => {}
                Got::Timeout => return Err("TCP connection not closed after framing error".into()),
                Got::Msg(m) => return Err(format!("unexpected extra {}", show(&m))),
            },
            End::Keep => {
                let follow = Ctx {
                    tr,
                    host: conn.local(),
                    srv,
                    n: format!("{}f", ctx.n),
                };
                conn.send(&fill(OPTIONS_OK, &follow, true))
                    .await
                    .map_err(|e| format!("connection unusable afterwards: {e}"))?;
                match conn.recv(ANSWER).await {
                    Got::Msg(m) if m.status == 200 => {}
                    Got::Msg(m) => {
                        return Err(format!(
                            "a normal OPTIONS on the same connection afterwards got {}",
                            show(&m)
                        ))
                    }
                    Got::Closed => {
                        return Err(
                            "TCP connection closed; expected it kept (framing intact)".into()
                        )
                    }
                    Got::Timeout => {
                        return Err("a normal OPTIONS on the same connection got no answer".into())
                    }
                }
            }
        }
    }
    Ok(())
}

/// Where the `i`-th request of a multi-message buffer starts (dblreq): the INVITE for `i > 0`.
fn find_nth_invite(bytes: &[u8], i: usize) -> usize {
    if i == 0 {
        return 0;
    }
    bytes
        .windows(8)
        .position(|w| w == b"\nINVITE ")
        .map_or(0, |p| p + 1)
}

// ---- sipp ----------------------------------------------------------------------------------

/// Waits for one sipp of the normal call; Err with its error log unless it exited 0.
async fn passed(s: &mut Sipp, what: &str, secs: u64) -> Result<(), String> {
    match wait(s, secs).await {
        0 => Ok(()),
        code => Err(format!("sipp {what} exited {code}:\n{}", s.errors())),
    }
}

/// A normal call after the batch: op2 registers (sipp, MD5), a sipp phone answers, a sipp
/// trunk calls the line and hangs up; every sipp must exit 0.
async fn normal_call_with_sipp(app: &TestApp) -> Result<(), String> {
    let srv = app.server.sip_addr.to_string();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path();
    let start = |name: &str, port: u16, args: &[&str]| {
        Sipp::start(
            d,
            &srv,
            &sipp::scenario(d, name, &[]),
            "127.0.0.1",
            port,
            args,
        )
    };

    let phone_port = sipp::port();
    let mut phone = start("phone-answer", phone_port, &["-m", "1"]);
    let contact_port = phone_port.to_string();
    let mut reg = start(
        "phone-register",
        sipp::port(),
        &[
            "-m",
            "1",
            "-s",
            "op2",
            "-au",
            "op2",
            "-ap",
            "demo-password-op2",
            "-key",
            "contact_port",
            &contact_port,
            "-key",
            "expires",
            "600",
        ],
    );
    passed(&mut reg, "phone-register", 15).await?;

    let mut trunk = start(
        "trunk-call",
        sipp::port(),
        &[
            "-m",
            "1",
            "-s",
            "0120000000",
            "-key",
            "caller",
            "0134220001",
            "-d",
            "500",
        ],
    );
    passed(&mut trunk, "trunk-call", 20).await?;
    passed(&mut phone, "phone-answer", 20).await
}

// ---- The test ------------------------------------------------------------------------------

async fn sip_status(app: &TestApp) -> Value {
    let admin = app.admin().await;
    let res = admin.get("/api/sip/status").await;
    assert_eq!(res.status(), 200, "GET /api/sip/status");
    res.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_tricky_messages_over_udp_and_tcp() {
    let app = TestApp::spawn(backends()[0]).await;
    let srv = app.server.sip_addr;
    let started = Instant::now();

    let cases = cases();
    assert!(cases.len() >= 40, "at least 40 messages");
    let mut failures: Vec<String> = Vec::new();
    let mut sent = (0usize, 0usize);
    for (i, c) in cases.iter().enumerate() {
        for (tr, want) in [(Tr::Udp, &c.udp), (Tr::Tcp, &c.tcp)] {
            let n = format!("{i}{}", if tr == Tr::Udp { "u" } else { "t" });
            let res = run_one(c, want, tr, srv, n).await;
            match tr {
                Tr::Udp => sent.0 += 1,
                Tr::Tcp => sent.1 += 1,
            }
            if let Err(e) = res {
                failures.push(format!("{} over {tr:?}: {e}", c.name));
            }
        }
    }
    eprintln!(
        "sent {} messages ({} cases; {} over UDP, {} over TCP) in {:?}",
        sent.0 + sent.1,
        cases.len(),
        sent.0,
        sent.1,
        started.elapsed()
    );

    // The process still serves: a normal OPTIONS over both transports.
    let alive = case("OPTIONS after the batch", Text(OPTIONS_OK), answer(200));
    for tr in [Tr::Udp, Tr::Tcp] {
        if let Err(e) = run_one(&alive, &alive.udp, tr, srv, format!("alive{tr:?}")).await {
            failures.push(format!("liveness OPTIONS over {tr:?}: {e}"));
        }
    }

    // The status API counted them.
    let status = sip_status(&app).await;
    let counters = &status["counters"];
    let count = |k: &str| counters[k].as_u64().unwrap_or(0);
    eprintln!(
        "after the batch: counters {counters}, tables {}",
        status["tables"]
    );
    if count("malformed_requests") < 40 {
        failures.push(format!(
            "malformed_requests should count every 400/505/513 answered (>= 40), got {}",
            count("malformed_requests")
        ));
    }
    if count("malformed_responses") < 3 {
        failures.push(format!(
            "malformed_responses should count scalarlg, bigcode and the bad-length response (>= 3), got {}",
            count("malformed_responses")
        ));
    }
    if count("stray_responses") < 10 {
        failures.push(format!(
            "stray_responses should count the five stray responses over both transports (>= 10), got {}",
            count("stray_responses")
        ));
    }
    if count("rejected") < 2 {
        failures.push(format!(
            "rejected should count the outsider INVITEs (2), got {}",
            count("rejected")
        ));
    }

    // A normal call right after.
    if sipp::available() {
        match normal_call_with_sipp(&app).await {
            Ok(()) => {
                eprintln!(
                    "normal call after the batch: sipp register, trunk call and phone all exited 0"
                );
                let after = sip_status(&app).await;
                let calls = after["counters"]["calls"].as_u64().unwrap_or(0);
                let registrations = after["counters"]["registrations"].as_u64().unwrap_or(0);
                if registrations < 1 {
                    failures.push("the sipp phone's REGISTER was not counted".into());
                }
                if calls <= count("calls") {
                    failures.push("the sipp call was not counted as a call".into());
                }
            }
            Err(e) => failures.push(format!("normal call after the batch: {e}")),
        }
    }

    eprintln!("total {:?}", started.elapsed());
    app.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {} exchanges failed:\n{}",
        failures.len(),
        sent.0 + sent.1,
        failures.join("\n")
    );
}

/// Every message of the case table as sent over UDP to `srv`, for the fuzz target's seed
/// corpus (issue 16 item 7): (case name, sent from outside the trunk, bytes).
pub(crate) fn seed_messages(
    srv: SocketAddr,
    trunk_host: SocketAddr,
    outsider_host: SocketAddr,
) -> Vec<(&'static str, bool, Vec<u8>)> {
    cases()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let outsider = c.src != TRUNK;
            let ctx = Ctx {
                tr: Tr::Udp,
                host: if outsider { outsider_host } else { trunk_host },
                srv,
                n: format!("seed{i}"),
            };
            (c.name, outsider, build(&c.msg, &ctx))
        })
        .collect()
}
